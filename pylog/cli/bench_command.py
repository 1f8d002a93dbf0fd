"""``pylog bench``: the command's arguments; the suite itself is ``pylog.bench``."""

from __future__ import annotations

import argparse
import sys


def register(subcommands: argparse._SubParsersAction) -> None:
    bench = subcommands.add_parser(
        "bench",
        help="measure the engines: append, records(), read_columns(), random reads, recovery",
        description="Run the main workloads on the native and reference engines and plain baselines "
        "(os.write, sqlite3) in one run, and print medians and ratios.",
    )
    bench.add_argument("--dir", help="work directory (default: a new temporary directory, removed after)")
    bench.add_argument("--quick", action="store_true", help="small sizes: a smoke test, not a measurement")
    bench.add_argument("--repeat", type=int, help="runs per measurement (median taken; default 5, quick 3)")
    bench.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    bench.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from pylog import bench

    if args.repeat is not None and args.repeat < 1:
        print("pylog bench: --repeat must be >= 1", file=sys.stderr)
        return 2
    return bench.main(args.dir, args.quick, args.repeat, args.json)
