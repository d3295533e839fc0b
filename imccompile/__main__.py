"""``python -m imccompile``: the command line (the same as the ``imccompile`` script)."""

from __future__ import annotations

import sys

from imccompile.cli import main

if __name__ == "__main__":
    sys.exit(main())
