"""Write docs/settings.md from the settings table (prefork/command/settings.py).

    python scripts/gen_settings_doc.py            # rewrite docs/settings.md
    python scripts/gen_settings_doc.py --check    # exit 1 if the committed file is stale

tests/test_settings.py fails when the committed file differs from the table.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from prefork.command.reference import reference  # noqa: E402

DOC = ROOT / "docs" / "settings.md"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only say whether it is stale")
    args = parser.parse_args()
    text = reference()
    if args.check:
        stale = not DOC.is_file() or DOC.read_text() != text
        print(f"{DOC.relative_to(ROOT)}: {'stale' if stale else 'up to date'}")
        return 1 if stale else 0
    DOC.write_text(text)
    print(f"wrote {DOC.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
