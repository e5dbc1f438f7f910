"""A longer run of the HTTP framing's differential fuzzer against h11:
``python scripts/fuzz_http.py [CASES] [SEED]`` judges the parsers in process
(tests/http_grammar/differential.py); ``python scripts/fuzz_http.py --live CASES [SEED]`` sends
the mutants to a real one-worker pool per head parser over sockets (tests/http_grammar/live.py).
Prints each outcome's count and an example of each disagreement; exits 1 if there is any.
The runs made, and each class where prefork and h11 differ: docs/http-fuzzing.md."""

from __future__ import annotations

import importlib.util
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from helpers import LOCAL, server_process  # noqa: E402  (tests/helpers.py)
from tests.http_grammar import differential, live  # noqa: E402


def in_process(cases: int, seed: int,
               parsers: tuple[str, ...]) -> tuple[Counter[str], dict[str, bytes]]:
    return differential.run(cases, seed, parsers)


def over_sockets(cases: int, seed: int,
                 parsers: tuple[str, ...]) -> tuple[Counter[str], dict[str, bytes]]:
    outcomes: Counter[str] = Counter()
    examples: dict[str, bytes] = {}
    for parser in parsers:
        with server_process("serve", "tests.apps.grammar_echo:application", "-b", LOCAL,
                            "-w", "1", "--http-parser", parser) as server:
            address = server.tcp_address()
            server.wait_workers(1)
            counts, found = live.run(address, cases, seed)
        outcomes.update({f"{parser}: {key}": n for key, n in counts.items()})
        examples.update({f"{parser}: {key}": data for key, data in found.items()})
    return outcomes, examples


def main() -> int:
    args = sys.argv[1:]
    socketed = args[:1] == ["--live"]
    args = args[1:] if socketed else args
    cases = int(args[0]) if args else 100_000
    seed = int(args[1]) if len(args) > 1 else 0
    parsers = (("python", "auto", "httptools") if importlib.util.find_spec("httptools")
               else ("python", "auto"))
    started = time.monotonic()
    outcomes, examples = (over_sockets if socketed else in_process)(cases, seed, parsers)
    print(f"{cases} mutants{' over sockets' if socketed else ''}, seed {seed}, parsers "
          f"{', '.join(parsers)}, {time.monotonic() - started:.0f} s")
    for key, count in sorted(outcomes.items()):
        print(f"{count:8d}  {key}")
    for key, data in examples.items():
        print(f"example of {key}: {data!r}")
    return 1 if examples else 0


if __name__ == "__main__":
    sys.exit(main())
