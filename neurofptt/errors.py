"""Exceptions raised for bad user input.

Every error the toolkit raises on purpose derives from :class:`NeurofpttError`, so the CLI can print
its message (which always names the problem and the fix) instead of a traceback.
"""


class NeurofpttError(Exception):
    """Base class of all errors that carry a user-facing message."""


class ConfigError(NeurofpttError, ValueError):
    """A configuration value is out of range or inconsistent."""


class TrainingDiverged(ConfigError):
    """Float training's loss became NaN or infinite in epoch ``epoch`` (from 1): the rate is too
    high for the task, or its gradients explode."""

    def __init__(self, message: str, epoch: int) -> None:
        super().__init__(message)
        self.epoch = epoch


class ShapeError(NeurofpttError, ValueError):
    """An array or tensor has the wrong shape, dtype or contains NaN/inf."""


class CheckpointError(NeurofpttError):
    """A checkpoint or quantized-model file is missing, corrupt or does not match the config."""


class ToolMissingError(NeurofpttError):
    """An external tool (simulator, synthesiser) is not installed."""


class VerificationError(NeurofpttError):
    """The RTL disagreed with the golden model."""


class SynthesisError(NeurofpttError):
    """Yosys or nextpnr failed, or its output could not be read."""
