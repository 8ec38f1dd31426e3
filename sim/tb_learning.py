"""cocotb test module for a learning core (a config with a ``[hardware.learning]`` table).

The testbench lives in :mod:`neurofptt.verify.testbench_learning` so that it ships with the
package; this module re-exports its test for cocotb flows that look for test modules in ``sim/``
(``COCOTB_TEST_MODULES=tb_learning`` with this directory on ``PYTHONPATH``).  It needs
``NEUROFPTT_STIMULUS`` (config, initial weights, spikes, labels) and ``NEUROFPTT_RESULTS``, as
written and read by :func:`neurofptt.verify.run_rtl_learning`, the usual way to run it.
"""

from neurofptt.verify.testbench_learning import test_learning_core_vs_golden

__all__ = ["test_learning_core_vs_golden"]
