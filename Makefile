# The two commands of the README: `make demo` and `make test`.  Both set everything up first:
# the virtual environment, the package with its extras, and Icarus Verilog.

VENV    ?= .venv
PYTHON  ?= python3
PY      := $(VENV)/bin/python
STAMP   := $(VENV)/.neurofptt-installed
DEMO    ?= runs/demo

.PHONY: demo test setup iverilog lint docs clean hdl

setup: $(STAMP) iverilog

# torch is pinned and installed first: this platform provides a CPU build of 2.13.0, while an
# unpinned torch (or one pulled in by another package) would be a multi-GB CUDA build.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[dev,fpga,docs,data,dist,sim,nir,board]'
	touch $(STAMP)

iverilog:
	@if ! command -v iverilog >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing Icarus Verilog (apt-get install -y iverilog) ..."; \
	    apt-get update -q && apt-get install -y -q iverilog; \
	  else \
	    echo "error: Icarus Verilog is not installed and this user cannot install it." >&2; \
	    echo "       run as root: apt-get update && apt-get install -y iverilog" >&2; \
	    exit 1; \
	  fi; \
	fi

demo: setup
	$(VENV)/bin/neurofptt flow --out $(DEMO)
	@echo "report: $(DEMO)/report.md   metrics: $(DEMO)/metrics.json"

# the tests, then the documentation site: a broken link, anchor or API page fails `make test` too
test: setup
	$(PY) -m pytest -n 2 --dist loadfile -q
	$(VENV)/bin/mkdocs build --strict

# Refresh the reference accelerator in hdl/ from the demo's quantized network.
hdl: setup
	@test -f $(DEMO)/quantized.npz || { echo "error: $(DEMO)/quantized.npz is missing; run make demo first" >&2; exit 1; }
	cp $(DEMO)/quantized.npz hdl/quantized.npz
	$(VENV)/bin/neurofptt generate --model hdl/quantized.npz --out hdl
	rm -f hdl/generate.json

lint: setup
	$(VENV)/bin/ruff check neurofptt tests sim
	$(VENV)/bin/ruff format --check neurofptt tests sim

docs: setup
	$(VENV)/bin/mkdocs build --strict

clean:
	rm -rf $(VENV) runs site .pytest_cache
