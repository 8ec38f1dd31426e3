"""The command decoder and response encoder around a core, in the Amaranth simulator, without
the UART: the driver's command bytes go in, the response bytes are parsed with the driver's
parser, and every spike, readout and read-back weight equals the golden model.  And the whole
top through its pins: the receive buffer's overrun bit and the break that resets the board."""

from __future__ import annotations

import numpy as np
import pytest
from amaranth.hdl import Module
from amaranth.lib import wiring
from amaranth.sim import Simulator

from neurofptt.board import BoardError, read_response
from neurofptt.board.driver import (
    clear_command,
    load_commands,
    read_command,
    spikes_commands,
    step_command,
)
from neurofptt.hdl.board.decoder import CommandDecoder
from neurofptt.hdl.board.encoder import ResponseEncoder
from neurofptt.hdl.board.protocol import INFO_BYTES, BoardInfo, Framing, Opcode, info_record
from neurofptt.hdl.board.top import BoardTop
from neurofptt.hdl.core import LifCore
from neurofptt.hdl.ports import weight_dump_layout
from neurofptt.onchip import random_network
from neurofptt.quant.config import HardwareConfig, LearningConfig
from neurofptt.quant.golden import golden_run
from neurofptt.verify.learning import decode_dump, golden_learning_run, load_words
from neurofptt.verify.streams import decode_word, encode_word

INFERENCE = HardwareConfig(
    n_in=5, n_rec=6, n_out=3, weight_bits=6, membrane_bits=10, frac_bits=4, leak_shift=2,
    out_leak_shift=1, threshold=24, w_in_shift=2, w_rec_shift=1, w_out_shift=2, lanes=2,
)  # fmt: skip
LEARNING = INFERENCE.replace(
    learning=LearningConfig(mode="eprop", error="target", supervised_steps=2, lr_shift_in=6,
                            lr_shift_rec=6, lr_shift_out=6, target=64, psi_width_shift=5,
                            psi_bits=3, trace_bits=8, trace_frac_bits=4, signal_bits=10,
                            signal_shift=2),
)  # fmt: skip


def exchange(net, commands: list[bytes], stall: int = 0) -> bytes:
    """Feed ``commands`` to a decoder and encoder around ``net``'s core; return every byte the
    encoder sent.  ``stall``: the output takes a byte only every ``stall + 1`` cycles."""
    cfg = net.config
    m = Module()
    m.submodules.decoder = decoder = CommandDecoder(cfg)
    m.submodules.core = core = LifCore(net)
    m.submodules.encoder = encoder = ResponseEncoder(cfg, info_record(net, 64)[:-1])
    wiring.connect(m, decoder.o_event, core.i_event)
    wiring.connect(m, decoder.o_job, encoder.i_job)
    wiring.connect(m, core.o_spike, encoder.i_spike)
    wiring.connect(m, core.o_readout, encoder.i_readout)
    if cfg.learning is not None:
        wiring.connect(m, decoder.o_weights, core.i_weights)
        wiring.connect(m, core.o_weights, encoder.i_weights)
        m.d.comb += encoder.idle.eq(core.i_weights.ready)
    m.d.comb += encoder.status.eq(BoardInfo.FRAMING)
    data = b"".join(commands)
    out = bytearray()
    fed = []

    async def feed(ctx) -> None:
        for byte in data:
            ctx.set(decoder.i_byte.payload, byte)
            ctx.set(decoder.i_byte.valid, 1)
            await ctx.tick().until(decoder.i_byte.ready)
        ctx.set(decoder.i_byte.valid, 0)
        fed.append(True)

    async def drain(ctx) -> None:
        cycle = 0
        async for _, _, valid, payload in ctx.tick().sample(
            encoder.o_byte.valid, encoder.o_byte.payload
        ):
            ready = cycle % (stall + 1) == 0
            if valid and ready:
                out.append(payload)
            ctx.set(encoder.o_byte.ready, (cycle + 1) % (stall + 1) == 0)
            cycle += 1

    async def wait(ctx) -> None:
        """Until every byte is fed and nothing came out for a while."""
        quiet, seen = 0, 0
        while quiet < 300:
            await ctx.tick()
            quiet = quiet + 1 if fed and len(out) == seen else 0
            seen = len(out)

    sim = Simulator(m)
    sim.add_clock(1e-6)
    sim.add_testbench(feed, background=True)
    sim.add_testbench(drain, background=True)
    sim.add_testbench(wait)
    sim.run()
    return bytes(out)


class Reader:
    """``read(n)`` over a byte string, as a transport's."""

    def __init__(self, data: bytes) -> None:
        self.data, self.at = data, 0

    def read(self, n: int) -> bytes:
        if self.at + n > len(self.data):
            raise BoardError("out of bytes")
        self.at += n
        return self.data[self.at - n : self.at]


def sample_commands(x: np.ndarray, framing: Framing, learn=None, label=None, shift=None):
    commands, ops = [clear_command()], [Opcode.CLEAR]
    for t in range(x.shape[0]):
        for command in spikes_commands(np.flatnonzero(x[t]), framing, 2):
            commands.append(command)
            ops.append(Opcode.SPIKES)
        if learn is None:
            commands.append(step_command(framing))
        else:
            commands.append(step_command(framing, bool(learn[t]), int(label[t]), int(shift[t])))
        ops.append(Opcode.STEP)
    return commands, ops


def step_outputs(records, n_rec: int, n_out: int) -> tuple[np.ndarray, np.ndarray]:
    spikes = np.zeros(n_rec, bool)
    readout = [int.from_bytes(d, "little", signed=True) for tag, d in records if tag == ord("o")]
    for tag, d in records:
        if tag == ord("s"):
            spikes[int.from_bytes(d, "little")] = True
    assert len(readout) == n_out
    return spikes, np.array(readout)


@pytest.mark.parametrize("stall", [0, 2])
def test_inference_core_through_commands(stall: int) -> None:
    net = random_network(INFERENCE, seed=3, spread=24)
    framing = Framing.of(INFERENCE)
    rng = np.random.default_rng(stall)
    x = rng.random((2, 5, INFERENCE.n_in)) < 0.5
    x[0, 1] = 0  # a silent step
    x[1, 2] = 1  # every input: several SPIKES commands
    commands, ops = [bytes([Opcode.INFO])], [Opcode.INFO]
    for b in range(2):
        c, o = sample_commands(x[b], framing)
        commands += c
        ops += o
    commands.append(bytes([Opcode.SPIKES, 0]))  # an empty SPIKES is answered too
    ops.append(Opcode.SPIKES)
    reader = Reader(exchange(net, commands, stall))
    responses = [read_response(reader.read, op, framing) for op in ops]
    assert reader.at == len(reader.data)
    info = BoardInfo.parse(responses[0][0][1])
    assert info.status == BoardInfo.FRAMING and info.rx_buffer == 64 and info.mode == "inference"
    golden = golden_run(net, x)
    steps = iter(r for r, op in zip(responses, ops, strict=True) if op == Opcode.STEP)
    for b in range(2):
        for t in range(5):
            spikes, readout = step_outputs(next(steps), INFERENCE.n_rec, INFERENCE.n_out)
            assert (spikes == golden.spikes[b, t]).all(), (b, t)
            assert (readout == golden.readout[b, t]).all(), (b, t)
    assert golden.spikes.any() and golden.readout.any()


def test_unknown_opcodes_are_answered_with_an_error() -> None:
    net = random_network(INFERENCE, seed=1, spread=8)
    framing = Framing.of(INFERENCE)
    # LOAD and READ exist only on learning cores
    data = exchange(net, [bytes([Opcode.LOAD]), bytes([0x00]), clear_command()])
    assert data == b"!L!\x00C"
    with pytest.raises(BoardError, match="does not know opcode 0x4c"):
        read_response(Reader(data).read, Opcode.LOAD, framing)


def test_learning_core_load_learn_and_read_back() -> None:
    start = random_network(LEARNING, seed=5, spread=20)
    loaded = random_network(LEARNING, seed=6, spread=30)
    framing = Framing.of(LEARNING)
    layout = weight_dump_layout(LEARNING)
    words = load_words(loaded, {})
    raw = [encode_word(layout, w, i == len(words) - 1) for i, w in enumerate(words)]
    rng = np.random.default_rng(0)
    x = rng.random((1, 4, LEARNING.n_in)) < 0.6
    labels = np.array([1])
    golden = golden_learning_run(loaded, x, labels)
    commands = load_commands(raw, framing, 7)
    ops = [Opcode.LOAD] * len(commands)
    c, o = sample_commands(x[0], framing, golden.learn[0], [1] * 4, golden.shift[0])
    commands += c + [read_command()]
    ops += o + [Opcode.READ]
    reader = Reader(exchange(start, commands))
    responses = [read_response(reader.read, op, framing) for op in ops]
    steps = [r for r, op in zip(responses, ops, strict=True) if op == Opcode.STEP]
    for t, records in enumerate(steps):
        spikes, readout = step_outputs(records, LEARNING.n_rec, LEARNING.n_out)
        assert (spikes == golden.spikes[0, t]).all() and (readout == golden.readout[0, t]).all()
    dump = [decode_word(layout, int.from_bytes(d, "little"))[0] for _, d in responses[-1]]
    weights = decode_dump(start, dump)
    assert golden.updates == 2
    for m, w in golden.snapshots[-1].weights.items():
        assert (weights[m] == w).all(), m
    assert any((golden.snapshots[-1].weights[m] != loaded.matrix(m)).any() for m in weights)


def test_board_top_overrun_status_and_break() -> None:
    """Through the UART pins of the whole top: a host that floods the receive buffer sees the
    overrun bit in ``INFO``; a break resets the board and clears it."""
    net = random_network(INFERENCE, seed=1, spread=8)
    divisor = 4
    top = BoardTop(net, divisor, rx_buffer=4)
    received = bytearray()
    info = bytes([Opcode.INFO])

    async def line(ctx, level: int, bits: int) -> None:
        ctx.set(top.rx, level)
        await ctx.tick().repeat(bits * divisor)

    async def send(ctx, data: bytes) -> None:
        for byte in data:
            for bit in (0, *((byte >> i) & 1 for i in range(8)), 1):
                await line(ctx, bit, 1)

    async def quiet(ctx) -> None:
        """Until nothing has come from the board for two frames."""
        seen, idle = len(received), 0
        while idle < 20 * divisor:
            await ctx.tick()
            idle = idle + 1 if len(received) == seen else 0
            seen = len(received)

    async def host(ctx) -> None:
        await send(ctx, info * 10)  # each answer takes 27 frames: the buffer overflows
        await quiet(ctx)
        received.clear()
        await send(ctx, info)
        await quiet(ctx)
        flooded = bytes(received)
        received.clear()
        await line(ctx, 0, 25)  # a break of two and a half frames
        await line(ctx, 1, 2)
        await send(ctx, info)
        await quiet(ctx)
        assert BoardInfo.parse(flooded[1:-1]).status & BoardInfo.OVERRUN
        assert len(received) == 2 + INFO_BYTES and received[-1] == Opcode.INFO
        assert BoardInfo.parse(bytes(received[1:-1])).status == 0

    async def listen(ctx) -> None:
        """A frame's bits sampled in their middles, counted from the start bit's edge."""
        since = None  # cycles since the start bit's falling edge
        bits: list[int] = []
        async for _, _, tx in ctx.tick().sample(top.tx):
            if since is None:
                since = 0 if tx == 0 else None
                continue
            since += 1
            if since % divisor == divisor // 2 and since > divisor:
                bits.append(tx)
            if len(bits) == 9:  # eight data bits and the stop bit
                received.append(sum(b << i for i, b in enumerate(bits[:8])))
                since, bits = None, []

    sim = Simulator(top)
    sim.add_clock(1e-6)
    sim.add_testbench(host)
    sim.add_testbench(listen, background=True)
    sim.run()


def test_two_byte_input_indices() -> None:
    """Input indices past 255 take two bytes, least significant first."""
    cfg = HardwareConfig(n_in=300, n_rec=3, n_out=2, lanes=3, threshold=40)
    net = random_network(cfg, seed=4, spread=30)
    framing = Framing.of(cfg)
    assert framing.in_index == 2
    x = np.zeros((1, 3, cfg.n_in), bool)
    x[0, 0, [0, 256, 299]] = True
    x[0, 2, [1, 255, 257, 298]] = True
    commands, ops = sample_commands(x[0], framing)
    reader = Reader(exchange(net, commands))
    responses = [read_response(reader.read, op, framing) for op in ops]
    golden = golden_run(net, x)
    steps = [r for r, op in zip(responses, ops, strict=True) if op == Opcode.STEP]
    for t, records in enumerate(steps):
        spikes, readout = step_outputs(records, cfg.n_rec, cfg.n_out)
        assert (spikes == golden.spikes[0, t]).all() and (readout == golden.readout[0, t]).all()
    assert golden.readout[0, 0].any()
