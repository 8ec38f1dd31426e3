"""The board top: the core behind a UART, and its Verilog for simulation.

::

    rx -> UartRx -> RewindBuffer -> CommandDecoder -> i_event, i_weights -> LifCore
    tx <- UartTx <- ResponseEncoder <- o_spike, o_readout, o_weights, idle <- LifCore

A break on ``rx`` resets everything but the receiver and the memories (the weights stay; the
core's registers return to their initial values, as after its ``rst``), so a host can always
start again from a known state.  The receive buffer is a ring in block RAM that the decoder
reads each command from twice, to check its CRC and then to carry it out; its depth is what
``INFO`` reports as the receive buffer, the bytes a host may have in flight.  The status byte
of ``INFO`` records a byte lost to a full buffer, a bad stop bit and a refused command, until
the next break.
"""

from __future__ import annotations

from amaranth.back import verilog
from amaranth.hdl import Module, ResetInserter, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from neurofptt.hdl.board.decoder import CommandDecoder
from neurofptt.hdl.board.encoder import ResponseEncoder
from neurofptt.hdl.board.protocol import BoardInfo, Tag, info_record
from neurofptt.hdl.board.rxbuffer import RewindBuffer
from neurofptt.hdl.board.uart import UartRx, UartTx
from neurofptt.hdl.core import LifCore
from neurofptt.hdl.generate import add_time_zero_kick
from neurofptt.quant.network import QuantizedNetwork

__all__ = ["BOARD_TOP", "RX_BUFFER", "BoardTop", "render_board_verilog"]

#: the module name of the board top's Verilog
BOARD_TOP = "neurofptt_board"

#: default depth of the receive buffer in bytes (a power of two): one block RAM on iCE40
#: (4 kbit) and well within one on ECP5, room for a command of the longest kind
RX_BUFFER = 512


class BoardTop(wiring.Component):
    """The core for ``net`` with a UART host link of ``divisor`` clock cycles per bit and a
    receive buffer of ``rx_buffer`` bytes.  Ports: ``rx`` (in, idles at 1), ``tx`` (out)."""

    def __init__(self, net: QuantizedNetwork, divisor: int, rx_buffer: int = RX_BUFFER) -> None:
        self.net = net
        self.divisor = divisor
        self.rx_buffer = rx_buffer
        super().__init__({"rx": In(1, init=1), "tx": Out(1, init=1)})

    def elaborate(self, platform: object) -> Module:  # noqa: ARG002 - Amaranth interface
        m = Module()
        cfg = self.net.config
        m.submodules.uart_rx = rx = UartRx(self.divisor)
        m.d.comb += rx.rx.eq(self.rx)
        brk = rx.brk
        info = info_record(self.net, self.rx_buffer)[:-1]
        parts = {
            "rx_buffer": (buffer := RewindBuffer(self.rx_buffer)),
            "decoder": (decoder := CommandDecoder(cfg)),
            "core": (core := LifCore(self.net)),
            "encoder": (encoder := ResponseEncoder(cfg, info)),
            "uart_tx": (tx := UartTx(self.divisor)),
        }
        for name, part in parts.items():
            m.submodules[name] = ResetInserter({"sync": brk})(part)

        overrun, framing, refused = Signal(), Signal(), Signal()
        job = decoder.o_job
        with m.If(brk):
            m.d.sync += [overrun.eq(0), framing.eq(0), refused.eq(0)]
        with m.Else():
            m.d.sync += [
                overrun.eq(overrun | buffer.overrun),
                framing.eq(framing | rx.framing_error),
                refused.eq(refused | (job.valid & job.ready & (job.p.op == Tag.ERROR))),
            ]
        status = (
            overrun * BoardInfo.OVERRUN | framing * BoardInfo.FRAMING | refused * BoardInfo.REFUSED
        )
        m.d.comb += [
            decoder.full.eq(buffer.full),
            buffer.rewind.eq(decoder.rewind),
            buffer.commit.eq(decoder.commit),
            encoder.status.eq(status),
            self.tx.eq(tx.tx),
        ]
        wiring.connect(m, rx.o_byte, buffer.i_byte)
        wiring.connect(m, buffer.o_byte, decoder.i_byte)
        wiring.connect(m, decoder.o_event, core.i_event)
        wiring.connect(m, decoder.o_job, encoder.i_job)
        wiring.connect(m, core.o_spike, encoder.i_spike)
        wiring.connect(m, core.o_readout, encoder.i_readout)
        if cfg.learning is not None:
            wiring.connect(m, decoder.o_weights, core.i_weights)
            wiring.connect(m, core.o_weights, encoder.i_weights)
            m.d.comb += encoder.idle.eq(core.i_weights.ready)
        wiring.connect(m, encoder.o_byte, tx.i_byte)
        return m


def render_board_verilog(
    net: QuantizedNetwork, divisor: int, rx_buffer: int = RX_BUFFER, name: str = BOARD_TOP
) -> str:
    """The Verilog of :class:`BoardTop` (ports ``clk``, ``rst``, ``rx``, ``tx``), for a
    simulator; with the core's time-zero wake-up of ``always @*`` blocks
    (``docs/hardware.md``, "Generated files"), which the board's own logic needs as much."""
    text = verilog.convert(BoardTop(net, divisor, rx_buffer), name=name, emit_src=False)
    return add_time_zero_kick(text)
