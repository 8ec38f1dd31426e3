"""Recurrent models with a one-step form and explicit state."""

from neurofptt.models.base import RecurrentModel, State, check_sequence, detach_state
from neurofptt.models.spiking import LeakyReadout, RecurrentLIF, SpikingRNN

__all__ = [
    "LeakyReadout",
    "RecurrentLIF",
    "RecurrentModel",
    "SpikingRNN",
    "State",
    "check_sequence",
    "detach_state",
]
