"""Recurrent models with a one-step form and explicit state."""

from neurofptt.models.alif import AdaptiveSpikingRNN, RecurrentALIF
from neurofptt.models.base import RecurrentModel, State, check_sequence, detach_state
from neurofptt.models.conventional import GatedRNN
from neurofptt.models.spiking import LeakyReadout, RecurrentLIF, SpikingRNN

__all__ = [
    "AdaptiveSpikingRNN",
    "GatedRNN",
    "RecurrentALIF",
    "LeakyReadout",
    "RecurrentLIF",
    "RecurrentModel",
    "SpikingRNN",
    "State",
    "check_sequence",
    "detach_state",
]
