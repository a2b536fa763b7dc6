"""Run the conformance catalogue against any running WebSocket echo server.

    python -m tests.conformance.report HOST PORT [--full] [--only 6.4.*,7.*]

Prints one row per case (id, verdict, detail), then the count of each verdict per
section and in all. Exits 0 when no case FAILED, 1 otherwise.
"""

from __future__ import annotations

import argparse
import fnmatch
import sys
import time
from collections import Counter
from collections.abc import Sequence

import trio

from .cases import Sizes, catalogue, section
from .runner import Result, Timing, Verdict, run_case

__all__ = ["main", "run_all", "summary"]

ORDER = [Verdict.OK, Verdict.NON_STRICT, Verdict.INFORMATIONAL, Verdict.UNIMPLEMENTED,
         Verdict.FAILED]


async def run_all(host: str, port: int, *, full: bool = False, only: Sequence[str] = (),
                  timing: Timing | None = None, verbose: bool = False) -> list[Result]:
    """Every selected case, one after the other, as Autobahn runs them."""
    cases = catalogue(Sizes.full() if full else Sizes())
    if only:
        cases = [c for c in cases if any(fnmatch.fnmatchcase(c.id, p) for p in only)]
    results = []
    for case in cases:
        result = await run_case(case, host, port, timing)
        results.append(result)
        if verbose:
            print(_row(result), flush=True)
    return results


def _row(result: Result) -> str:
    return f"{result.case.id:<8} {result.verdict.value:<13} {result.detail}"


def summary(results: Sequence[Result]) -> str:
    """A table of verdict counts per section, and the totals."""
    sections = list(dict.fromkeys(section(r.case.id) for r in results))
    head = f"{'section':<8}" + "".join(f"{v.value:>15}" for v in ORDER) + f"{'cases':>8}"
    lines = [head]
    for name in [*sections, "all"]:
        chosen = [r for r in results if name == "all" or section(r.case.id) == name]
        counts = Counter(r.verdict for r in chosen)
        lines.append(f"{name:<8}" + "".join(f"{counts[v]:>15}" for v in ORDER)
                     + f"{len(chosen):>8}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.conformance.report",
        description="Run the Autobahn-style RFC 6455 catalogue (sections 1-7, 9, 10) "
        "against a WebSocket echo server.")
    parser.add_argument("host")
    parser.add_argument("port", type=int)
    parser.add_argument("--full", action="store_true",
                        help="section 9 at Autobahn's sizes (messages up to 16 MiB, 1000 "
                        "round trips) instead of 1/16 of the sizes and 1/10 of the trips")
    parser.add_argument("--only", default="", metavar="PATTERNS",
                        help="comma-separated case id patterns, e.g. '6.4.*,7.9.*'")
    parser.add_argument("--pause-scale", type=float, default=1.0,
                        help="scale Autobahn's 1 s pauses in 5.19, 5.20 and 6.4.x")
    args = parser.parse_args(argv)
    only = [p.strip() for p in args.only.split(",") if p.strip()]
    timing = Timing(pause_scale=args.pause_scale)
    started = time.monotonic()
    print(f"{'case':<8} {'verdict':<13} detail", flush=True)
    results = trio.run(lambda: run_all(args.host, args.port, full=args.full, only=only,
                                       timing=timing, verbose=True))
    print()
    print(summary(results))
    print(f"\n{len(results)} cases in {time.monotonic() - started:.1f} s"
          f" ({'full' if args.full else 'scaled'} section 9)")
    return 1 if any(r.verdict is Verdict.FAILED for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
