"""cocotb test module for the generated LIF core.

The testbench itself lives in :mod:`neurofptt.verify.testbench` so that it ships with the
package; this module re-exports its tests for cocotb flows that look for test modules in ``sim/``
(``COCOTB_TEST_MODULES=tb_core`` with this directory on ``PYTHONPATH``).  It needs the same
environment as :func:`neurofptt.verify.run_rtl` provides:

* ``NEUROFPTT_STIMULUS``  stimulus ``.npz`` (spikes, expected spikes/readout, config)
* ``NEUROFPTT_RESULTS``   where to write the collected outputs (``.npz``)
* ``NEUROFPTT_BACKPRESSURE=1`` (optional) random stalls on every stream
* ``NEUROFPTT_SEED`` (optional) seed for those stalls

The usual way to run it is ``neurofptt verify`` or :func:`neurofptt.verify.run_rtl`, which write
the stimulus, build the Verilog with Icarus once and read the results back.
"""

from neurofptt.verify.testbench import test_core_vs_golden

__all__ = ["test_core_vs_golden"]
