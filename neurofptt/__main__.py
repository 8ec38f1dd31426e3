"""``python -m neurofptt``: the command line, for launchers that start a module (``torchrun``)."""

import sys

from neurofptt.cli import main

sys.exit(main())
