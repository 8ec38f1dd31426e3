"""neurofptt: online-trained recurrent and spiking networks, a bit-exact fixed-point golden model,
an Amaranth accelerator generator and cocotb verification."""

__version__ = "0.1.0"
