from __future__ import annotations

import sys
from pathlib import Path

HERE = str(Path(__file__).resolve().parent)  # netns.py
if HERE not in sys.path:
    sys.path.insert(0, HERE)

from netns import namespace  # noqa: E402,F401  (the fixture)
