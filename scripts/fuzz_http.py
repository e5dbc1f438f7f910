"""A longer run of the HTTP framing's differential fuzzer (tests/http_grammar/differential.py):
``python scripts/fuzz_http.py [CASES] [SEED]`` prints each outcome's count and an example of
each disagreement; exits 1 if there is any."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.http_grammar import differential


def main() -> int:
    cases = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    seed = int(sys.argv[2]) if len(sys.argv) > 2 else 0
    parsers = ("python", "httptools") if importlib.util.find_spec("httptools") else ("python",)
    outcomes, examples = differential.run(cases, seed, parsers)
    print(f"{cases} mutants, seed {seed}, parsers {', '.join(parsers)}")
    for key, count in sorted(outcomes.items()):
        print(f"{count:8d}  {key}")
    for key, data in examples.items():
        print(f"example of {key}: {data!r}")
    return 1 if examples else 0


if __name__ == "__main__":
    sys.exit(main())
