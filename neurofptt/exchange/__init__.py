"""Exchange with other tools: networks in and out of neurofptt through NIR, the Neuromorphic
Intermediate Representation (:mod:`neurofptt.exchange.nir`).

The ``nir`` package is an optional dependency (``pip install 'neurofptt[nir]'``); this package
imports without it and says how to install it when a function needs it.
"""

from neurofptt.exchange.nir import (
    DEFAULT_DT,
    EXPORT_RECORD,
    NIR_FILE,
    ImportedNetwork,
    LeakMapping,
    NirMapping,
    export_nir,
    from_nir,
    nearest_leak_shift,
    quantize_nir,
    read_nir,
    to_nir,
    write_nir,
)

__all__ = [
    "DEFAULT_DT",
    "EXPORT_RECORD",
    "NIR_FILE",
    "ImportedNetwork",
    "LeakMapping",
    "NirMapping",
    "export_nir",
    "from_nir",
    "nearest_leak_shift",
    "quantize_nir",
    "read_nir",
    "to_nir",
    "write_nir",
]
