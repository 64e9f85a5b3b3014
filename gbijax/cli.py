"""The ``gbijax`` command: ``gbijax data summary SOURCE`` and ``gbijax demo``.

User errors (an unknown data source, a missing path, an invalid option) end with a one-line
message on stderr and exit status 2, not a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys

from gbijax.data._sources import SOURCE_HELP


def _data_summary(args: argparse.Namespace) -> int:
    from gbijax.data import load_source, summarize

    dataset = load_source(args.source)
    print(json.dumps(summarize(dataset.sample(args.sample)), indent=None if args.compact else 2))
    return 0


def _demo(args: argparse.Namespace) -> int:
    from gbijax.demo import run_demo

    run_demo(out=args.out, seed=args.seed, quick=args.quick)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gbijax",
        description="Generator Based Inference for resonant anomaly detection at the LHC.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    data = sub.add_parser("data", help="inspect data sources").add_subparsers(
        dest="data_command", required=True
    )
    summary = data.add_parser("summary", help="print counts and feature means as one JSON object")
    summary.add_argument("source", help=SOURCE_HELP)
    summary.add_argument("--sample", default="data", help="which sample of the source (default: data)")
    summary.add_argument("--compact", action="store_true", help="print the JSON on one line")
    summary.set_defaults(run=_data_summary)

    demo = sub.add_parser("demo", help="run the whole GBI chain on the built-in toy")
    demo.add_argument("--out", default="results/demo", help="results directory (default: results/demo)")
    demo.add_argument("--seed", type=int, default=0, help="master PRNG seed")
    demo.add_argument("--quick", action="store_true", help="tiny sizes for a smoke run")
    demo.set_defaults(run=_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``gbijax`` console script."""
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except (ValueError, FileNotFoundError, NotADirectoryError, PermissionError) as err:
        print(f"gbijax: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
