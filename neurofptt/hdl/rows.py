"""Rows and lanes: how neurons and weights are laid out over the core's parallel lanes.

Neuron ``j`` is lane ``j % lanes`` of row ``j // lanes`` (:func:`~neurofptt.quant.config.lane_rows`
rows in all); a weight memory word holds one row's lanes for one presynaptic index.  The numpy
functions build memory images in this layout; the Amaranth ones walk it in hardware.
"""

from __future__ import annotations

import numpy as np
from amaranth.hdl import Const, Module, Mux, Signal, Value

from neurofptt.quant.config import lane_rows
from neurofptt.quant.network import QuantizedNetwork

__all__ = ["lane_words", "lowest_set", "memory_images", "next_row_lane", "packed_rows"]


def lane_words(w: np.ndarray, lanes: int) -> np.ndarray:
    """``w`` (fan_out, fan_in) in memory order, ``(fan_in * rows, lanes)``: word
    ``i * rows + r``, lane ``l`` holds ``w[r * lanes + l, i]``; padding lanes hold 0."""
    fan_out, fan_in = w.shape
    rows = lane_rows(fan_out, lanes)
    padded = np.zeros((rows * lanes, fan_in), np.int64)
    padded[:fan_out] = w
    return padded.T.reshape(fan_in * rows, lanes)


def packed_rows(w: np.ndarray, lanes: int, bits: int) -> list[int]:
    """Pack ``w`` (fan_out, fan_in) into words (:func:`lane_words`), lane ``l`` in bits
    ``[l * bits, (l + 1) * bits)``."""
    lanes_of = lane_words(w, lanes) & ((1 << bits) - 1)
    return [sum(int(v) << (lane * bits) for lane, v in enumerate(word)) for word in lanes_of]


def memory_images(net: QuantizedNetwork) -> dict[str, list[int]]:
    """Initial contents of the weight memories in RTL address order.

    Each word is an unsigned integer of ``lanes * weight_bits`` bits holding one two's-complement
    weight per lane (lane 0 in the least significant bits).
    """
    lanes = net.config.lanes
    wb = net.config.weight_bits
    return {
        "w_in": packed_rows(np.asarray(net.w_in), lanes, wb),
        "w_rec": packed_rows(np.asarray(net.w_rec), lanes, wb),
        "w_out": packed_rows(np.asarray(net.w_out), lanes, wb),
    }


def next_row_lane(m: Module, row: Signal, lane: Signal, lanes: int) -> None:
    """Advance ``(row, lane)`` to the next value of a row-major walk over ``lanes`` lanes (lane
    ``l`` of row ``r`` is item ``r * lanes + l``), as the readouts are visited."""
    if lanes > 1:
        with m.If(lane == lanes - 1):
            m.d.sync += [lane.eq(0), row.eq(row + 1)]
        with m.Else():
            m.d.sync += lane.eq(lane + 1)
    else:
        m.d.sync += row.eq(row + 1)


def lowest_set(mask: Value, width: int) -> Value:
    """Index of the lowest set bit of ``mask`` (0 if none)."""
    index = Const(0, range(max(width, 2)))
    for lane in reversed(range(width)):
        index = Mux(mask[lane], lane, index)
    return index
