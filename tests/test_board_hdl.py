"""The receive buffer, command decoder and response encoder around a core, in the Amaranth
simulator, without the UART: the driver's command bytes go in, the response bytes are parsed
with the driver's parser, and every spike, readout and read-back weight equals the golden
model; a command with a flipped bit is refused and has no effect, a corrupted response is
caught by its CRC.  And the whole top through its pins: the receive buffer's overrun bit, the
refused-command bit and the break that resets the board."""

from __future__ import annotations

import numpy as np
import pytest
from amaranth.hdl import Module, Signal
from amaranth.lib import wiring
from amaranth.sim import Simulator

from neurofptt.board import Board, BoardError, LinkError, read_response
from neurofptt.board.driver import (
    clear_command,
    info_command,
    load_commands,
    read_command,
    spikes_commands,
    step_command,
)
from neurofptt.hdl.board.crc import crc8, crc8_next, crc8_update
from neurofptt.hdl.board.decoder import CommandDecoder
from neurofptt.hdl.board.encoder import ResponseEncoder
from neurofptt.hdl.board.protocol import (
    BoardInfo,
    Fault,
    Framing,
    Opcode,
    Tag,
    frame,
    info_record,
)
from neurofptt.hdl.board.rxbuffer import RewindBuffer
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


def exchange(net, commands: list[bytes], stall: int = 0, depth: int = 64) -> bytes:
    """Feed ``commands`` through a receive buffer of ``depth`` bytes to a decoder and encoder
    around ``net``'s core, a byte whenever the buffer has room; return every byte the encoder
    sent.  ``stall``: the output takes a byte only every ``stall + 1`` cycles."""
    cfg = net.config
    m = Module()
    m.submodules.buffer = buffer = RewindBuffer(depth)
    m.submodules.decoder = decoder = CommandDecoder(cfg)
    wiring.connect(m, buffer.o_byte, decoder.i_byte)
    m.d.comb += [
        decoder.full.eq(buffer.full),
        buffer.rewind.eq(decoder.rewind),
        buffer.commit.eq(decoder.commit),
    ]
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
            while ctx.get(buffer.full):
                await ctx.tick()
            ctx.set(buffer.i_byte.payload, byte)
            ctx.set(buffer.i_byte.valid, 1)
            await ctx.tick()
            ctx.set(buffer.i_byte.valid, 0)
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


class Replay(Reader):
    """A transport whose board answers with the bytes ``data``, whatever it is sent."""

    def write(self, data: bytes) -> None:
        pass

    def send_break(self) -> None:
        pass

    def close(self) -> None:
        pass


def test_board_of_protocol_1_is_refused() -> None:
    """A protocol-1 board sends its INFO without a CRC and takes the driver's CRC byte for an
    unknown opcode; the driver names the version rather than a corrupted byte."""
    record = bytearray(info_record(random_network(INFERENCE, seed=1, spread=8), 64))
    record[2] = 1  # the version
    data = bytes([Tag.INFO, *record, Opcode.INFO, Tag.ERROR, info_command()[1]])
    with pytest.raises(BoardError, match="speaks protocol 1, this driver 2"):
        Board(Replay(data))
    record[2] = 2
    assert Board(Replay(frame(bytes([Tag.INFO, *record, Opcode.INFO])))).info.version == 2


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
    commands, ops = [info_command()], [Opcode.INFO]
    for b in range(2):
        c, o = sample_commands(x[b], framing)
        commands += c
        ops += o
    commands.append(frame(bytes([Opcode.SPIKES, 0])))  # an empty SPIKES is answered too
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
    # LOAD and READ exist only on learning cores; an unknown opcode costs only its own byte
    data = exchange(net, [bytes([Opcode.LOAD]), bytes([0x00]), clear_command()])
    assert data == frame(b"!L\x01") + frame(b"!\x00\x01") + frame(b"C")
    with pytest.raises(BoardError, match="does not know opcode 0x4c"):
        read_response(Reader(data).read, Opcode.LOAD, framing)


def test_crc8_check_value_and_gateware() -> None:
    """CRC-8/SMBUS's catalogued check value, and the gateware's XOR network equal to the
    bitwise definition for every running value with a spread of bytes."""
    assert crc8(b"123456789") == 0xF4
    assert crc8(frame(b"123456789")) == 0
    m = Module()
    crc, byte = Signal(8), Signal(8)
    out = Signal(8)
    m.d.comb += out.eq(crc8_next(crc, byte))
    pairs = [(c, b) for c in range(256) for b in (0x00, 0x01, 0x80, 0xA5, c ^ 0x3C)]

    async def bench(ctx) -> None:
        for c, b in pairs:
            ctx.set(crc, c)
            ctx.set(byte, b)
            assert ctx.get(out) == crc8_update(c, b), (c, b)

    sim = Simulator(m)
    sim.add_testbench(bench)
    sim.run()


def test_corrupted_command_is_refused_and_dropped() -> None:
    """A bit flipped in a ``SPIKES`` command's index: the board answers with an error record
    in that command's place and drops the whole command (the core's spikes and readouts are
    those of the input without it); the commands after it run."""
    net = random_network(INFERENCE, seed=3, spread=24)
    framing = Framing.of(INFERENCE)
    x = np.zeros((1, 4, INFERENCE.n_in), bool)
    x[0, :, [0, 2]] = True
    x[0, 1, 4] = True
    commands, ops = sample_commands(x[0], framing)
    hit = ops.index(Opcode.SPIKES, ops.index(Opcode.STEP) + 1)  # step 1's first SPIKES
    bad = bytearray(commands[hit])
    bad[2] ^= 0x04  # its first index
    commands[hit] = bytes(bad)
    reader = Reader(exchange(net, commands))
    responses = []
    for i, op in enumerate(ops):
        if i == hit:
            with pytest.raises(LinkError, match="CRC did not match"):
                read_response(reader.read, op, framing)
        else:
            responses.append((op, read_response(reader.read, op, framing)))
    assert reader.at == len(reader.data)
    dropped = x.copy()
    dropped[0, 1, np.flatnonzero(x[0, 1])[:2]] = False  # the refused command's two indices
    golden = golden_run(net, dropped)
    steps = [r for op, r in responses if op == Opcode.STEP]
    for t, records in enumerate(steps):
        spikes, readout = step_outputs(records, INFERENCE.n_rec, INFERENCE.n_out)
        assert (spikes == golden.spikes[0, t]).all() and (readout == golden.readout[0, t]).all()
    assert (golden_run(net, x).readout != golden.readout).any()


def test_corrupted_response_is_caught() -> None:
    """Every single bit flipped in the responses to a sample: the driver's parser raises (a CRC
    that does not match, a byte that starts no record, or, the stream cut short, a timeout)."""
    net = random_network(INFERENCE, seed=3, spread=24)
    framing = Framing.of(INFERENCE)
    x = np.ones((1, 1, INFERENCE.n_in), bool)
    commands, ops = sample_commands(x[0], framing)
    data = exchange(net, commands)
    reader = Reader(data)
    for op in ops:
        read_response(reader.read, op, framing)
    assert reader.at == len(data)
    for at in range(len(data)):  # every single flipped bit is caught
        for bit in range(8):
            bad = bytearray(data)
            bad[at] ^= 1 << bit
            reader = Reader(bytes(bad))
            with pytest.raises(BoardError):
                for op in ops:
                    read_response(reader.read, op, framing)


def test_command_longer_than_the_buffer_is_refused() -> None:
    """A count that makes a command longer than the receive buffer (a corrupted count) cannot
    be checked; the board drops what it holds and says so."""
    net = random_network(INFERENCE, seed=3, spread=24)
    framing = Framing.of(INFERENCE)
    data = exchange(net, [bytes([Opcode.SPIKES, 200]) + bytes(30)], depth=16)
    assert data.startswith(frame(bytes([Tag.ERROR, Opcode.SPIKES, Fault.LENGTH])))
    with pytest.raises(LinkError, match="longer than the receive buffer"):
        read_response(Reader(data).read, Opcode.SPIKES, framing)


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
    overrun bit in ``INFO``; a break resets the board and clears it; a corrupted command is
    refused and sets the refused bit."""
    net = random_network(INFERENCE, seed=1, spread=8)
    divisor = 4
    top = BoardTop(net, divisor, rx_buffer=4)
    received = bytearray()
    info = info_command()

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
        await send(ctx, info * 10)  # each answer takes 28 frames: the buffer overflows
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
        assert BoardInfo.parse(flooded[1:-2]).status & BoardInfo.OVERRUN
        assert received == frame(bytes([Tag.INFO]) + info_record(net, 4) + info[:1])
        received.clear()
        await send(ctx, bytes([info[0], info[1] ^ 0x10]) + info)
        await quiet(ctx)
        refused = frame(bytes([Tag.ERROR, Opcode.INFO, Fault.CHECKSUM]))
        assert received.startswith(refused)
        assert BoardInfo.parse(bytes(received[len(refused) + 1 : -2])).status == BoardInfo.REFUSED

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
