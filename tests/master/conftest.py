"""The master's parts, tested without forking: fakes in ``master_fakes.py`` (importable from
the tests of this directory) stand in for the pool, the server and the clock."""

from __future__ import annotations

import sys
from pathlib import Path

HERE = str(Path(__file__).resolve().parent)
if HERE not in sys.path:
    sys.path.insert(0, HERE)
