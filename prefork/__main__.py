from __future__ import annotations

import sys

from prefork.command.cli import main

sys.exit(main())
