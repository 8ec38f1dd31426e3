"""The board's UART in the Amaranth simulator: frames from the transmitter come out of the
receiver unchanged at several divisors, back to back and with gaps; a break and a bad stop bit
are told apart; baud divisors are checked against the clock."""

from __future__ import annotations

import random

import pytest
from amaranth.hdl import Module
from amaranth.sim import Simulator

from neurofptt.errors import ConfigError
from neurofptt.hdl.board.uart import UartRx, UartTx, baud_divisor


def loopback(divisor: int, data: list[int], gaps: list[int]) -> list[int]:
    """Send ``data`` through a transmitter wired to a receiver (``gaps[i]`` idle cycles before
    byte ``i``); return what the receiver delivered."""
    m = Module()
    m.submodules.tx = tx = UartTx(divisor)
    m.submodules.rx = rx = UartRx(divisor)
    m.d.comb += rx.rx.eq(tx.tx)
    received: list[int] = []

    async def send(ctx) -> None:
        for byte, gap in zip(data, gaps, strict=True):
            if gap:
                await ctx.tick().repeat(gap)
            ctx.set(tx.i_byte.payload, byte)
            ctx.set(tx.i_byte.valid, 1)
            await ctx.tick().until(tx.i_byte.ready)
            ctx.set(tx.i_byte.valid, 0)
        await ctx.tick().repeat(12 * divisor)

    async def receive(ctx) -> None:
        async for _, _, valid, payload, error in ctx.tick().sample(
            rx.o_byte.valid, rx.o_byte.payload, rx.framing_error
        ):
            assert not error
            if valid:
                received.append(payload)

    sim = Simulator(m)
    sim.add_clock(1e-6)
    sim.add_testbench(send)
    sim.add_testbench(receive, background=True)
    sim.run()
    return received


@pytest.mark.parametrize("divisor", [4, 5, 9])
def test_bytes_pass_unchanged(divisor: int) -> None:
    rng = random.Random(divisor)
    data = [0x00, 0xFF, 0x55, 0xAA] + [rng.randrange(256) for _ in range(12)]
    gaps = [rng.choice([0, 0, 1, 3, 2 * divisor]) for _ in data]
    assert loopback(divisor, data, gaps) == data


def drive_frame(divisor: int, bits: list[int]) -> tuple[list[int], int, int]:
    """Drive ``bits`` (one per bit time) into a receiver; return the bytes, framing errors and
    breaks it reported."""
    rx = UartRx(divisor)
    seen = {"bytes": [], "errors": 0, "breaks": 0}

    async def line(ctx) -> None:
        for bit in [1, 1, *bits, 1, 1]:
            ctx.set(rx.rx, bit)
            await ctx.tick().repeat(divisor)

    async def watch(ctx) -> None:
        async for _, _, valid, payload, error, brk in ctx.tick().sample(
            rx.o_byte.valid, rx.o_byte.payload, rx.framing_error, rx.brk
        ):
            if valid:
                seen["bytes"].append(payload)
            seen["errors"] += error
            seen["breaks"] += brk

    sim = Simulator(rx)
    sim.add_clock(1e-6)
    sim.add_testbench(line)
    sim.add_testbench(watch, background=True)
    sim.run()
    return seen["bytes"], seen["errors"], seen["breaks"]


def test_break_and_framing_error_are_not_bytes() -> None:
    frame = [0] + [1, 0, 1, 0, 0, 0, 0, 0]  # start, 0x05 lsb first
    assert drive_frame(6, frame + [1]) == ([0x05], 0, 0)
    assert drive_frame(6, frame + [0]) == ([], 1, 0)
    # a break of three frame times: one pulse, then nothing until the line is idle again
    assert drive_frame(6, [0] * 30 + [1] + frame + [1]) == ([0x05], 0, 1)


def test_glitch_shorter_than_half_a_bit_is_ignored() -> None:
    rx_bytes, errors, breaks = drive_frame(8, [])
    assert (rx_bytes, errors, breaks) == ([], 0, 0)


def test_baud_divisor() -> None:
    assert baud_divisor(12e6, 115_200) == 104
    assert baud_divisor(25e6, 1_000_000) == 25
    assert baud_divisor(48e6, 115_200) == 417
    with pytest.raises(ConfigError, match="too fast"):
        baud_divisor(12e6, 4_000_000)
    with pytest.raises(ConfigError, match="off"):
        baud_divisor(12e6, 1_400_000)  # 9 cycles give 1.33 MBd
