"""The operations around the core: the select-loop harness in ``test_control.py`` (``Loop``,
``loop_turn``, ``FakeMaster``) is importable from the tests of this directory."""

from __future__ import annotations

import sys
from pathlib import Path

HERE = str(Path(__file__).resolve().parent)
if HERE not in sys.path:
    sys.path.insert(0, HERE)
