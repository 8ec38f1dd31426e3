"""The quantized network: a hardware config plus the three integer weight matrices.

This is the artefact handed from the quantizer to the golden model, the HDL generator and the
testbenches.  Matrices use the torch ``nn.Linear`` orientation ``(fan_out, fan_in)``:
``w_in[j, i]`` connects input ``i`` to recurrent neuron ``j``; ``w_rec[j, i]`` connects recurrent
neuron ``i`` to ``j``; ``w_out[k, j]`` connects recurrent neuron ``j`` to readout ``k``.
"""

from __future__ import annotations

import io
import json
import zipfile
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from neurofptt.errors import CheckpointError, ConfigError
from neurofptt.io import atomic_write_bytes
from neurofptt.quant.config import HardwareConfig
from neurofptt.quant.exact import SpikeProducts

FORMAT_VERSION = 1


@dataclass(frozen=True)
class QuantizedNetwork:
    """Integer weights in the formats of ``config``; validated on construction."""

    config: HardwareConfig
    w_in: np.ndarray
    w_rec: np.ndarray
    w_out: np.ndarray

    def __post_init__(self) -> None:
        cfg = self.config
        expected = {
            "w_in": (cfg.n_rec, cfg.n_in),
            "w_rec": (cfg.n_rec, cfg.n_rec),
            "w_out": (cfg.n_out, cfg.n_rec),
        }
        for name, shape in expected.items():
            arr = np.asarray(getattr(self, name))
            if arr.shape != shape:
                raise ConfigError(
                    f"{name} has shape {arr.shape} but the config (n_in={cfg.n_in}, "
                    f"n_rec={cfg.n_rec}, n_out={cfg.n_out}) needs {shape}"
                )
            if not np.issubdtype(arr.dtype, np.integer) and (
                not np.all(np.isfinite(arr)) or not np.all(arr == np.round(arr))
            ):
                raise ConfigError(f"{name} must hold integers; quantize the model first")
            arr = arr.astype(np.int64)
            bad = (arr < cfg.w_min) | (arr > cfg.w_max)
            if bad.any():
                idx = tuple(int(i) for i in np.argwhere(bad)[0])
                raise ConfigError(
                    f"{name}{list(idx)} = {int(arr[idx])} does not fit in {cfg.weight_bits}-bit "
                    f"signed weights [{cfg.w_min}, {cfg.w_max}]; re-quantize or widen weight_bits"
                )
            arr.setflags(write=False)
            object.__setattr__(self, name, arr)

    @cached_property
    def products(self) -> SpikeProducts:
        """The weights in the golden model's exact product kernels (:mod:`neurofptt.quant.exact`),
        converted on first use and kept: the weight arrays are read-only, so they never go
        stale, and a network that learns is a new object per update."""
        return SpikeProducts.build(self.config, self.w_in, self.w_rec, self.w_out)

    def matrix(self, name: str) -> np.ndarray:
        """``w_in``, ``w_rec`` or ``w_out`` by the short name the learning datapath uses
        (``"in"``, ``"rec"``, ``"out"``)."""
        if name not in ("in", "rec", "out"):
            raise ConfigError(f"unknown weight matrix {name!r}; use 'in', 'rec' or 'out'")
        return getattr(self, f"w_{name}")

    def save(self, path: str | Path) -> Path:
        """Write an ``.npz`` atomically (temporary file, then rename)."""
        path = Path(path)
        buf = io.BytesIO()
        # weights have at most 16 bits (HardwareConfig limit), so int16 stores them exactly
        np.savez_compressed(
            buf,
            w_in=self.w_in.astype(np.int16),
            w_rec=self.w_rec.astype(np.int16),
            w_out=self.w_out.astype(np.int16),
            config=np.array(json.dumps({"version": FORMAT_VERSION, **self.config.to_dict()})),
        )
        atomic_write_bytes(path, buf.getvalue())
        return path

    @classmethod
    def load(cls, path: str | Path) -> QuantizedNetwork:
        path = Path(path)
        if not path.is_file():
            raise CheckpointError(
                f"quantized model {path} does not exist; run `neurofptt quantize` first"
            )
        try:
            with np.load(path, allow_pickle=False) as data:
                meta = json.loads(str(data["config"]))
                arrays = {k: data[k] for k in ("w_in", "w_rec", "w_out")}
        except (OSError, KeyError, ValueError, zipfile.BadZipFile) as exc:
            raise CheckpointError(f"{path} is not a neurofptt quantized model: {exc}") from exc
        if meta.pop("version", None) != FORMAT_VERSION:
            raise CheckpointError(f"{path} was written by an incompatible neurofptt version")
        return cls(HardwareConfig.from_dict(meta), **arrays)
