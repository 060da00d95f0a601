"""``python -m cliplens``: the same as the ``cliplens`` command."""

from __future__ import annotations

import os
import sys

from .cli.main import main

if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    sys.exit(main())
