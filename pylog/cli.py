"""The ``pylog`` command line. For now: ``pylog bench`` (topics, produce, consume... come later)."""

from __future__ import annotations

import argparse
import sys


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pylog", description="An embeddable, Kafka-compatible commit log.")
    sub = parser.add_subparsers(dest="command", required=True)
    bench = sub.add_parser(
        "bench",
        help="measure the engines: append, records(), read_columns(), random reads, recovery",
        description="Run the main workloads on the native and reference engines and plain baselines "
        "(os.write, sqlite3) in one run, and print medians and ratios.",
    )
    bench.add_argument("--dir", help="work directory (default: a new temporary directory, removed after)")
    bench.add_argument("--quick", action="store_true", help="small sizes: a smoke test, not a measurement")
    bench.add_argument("--repeat", type=int, help="runs per measurement (median taken; default 5, quick 3)")
    bench.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "bench":
        from pylog import bench

        if args.repeat is not None and args.repeat < 1:
            print("pylog bench: --repeat must be >= 1", file=sys.stderr)
            return 2
        return bench.main(args.dir, args.quick, args.repeat, args.json)
    return 2  # pragma: no cover - argparse enforces the subcommand


if __name__ == "__main__":
    sys.exit(main())
