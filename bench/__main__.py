"""`python -m bench` (`make bench`): FHIR vs bare-route throughput; see docs/benchmarks.md."""

from __future__ import annotations

import argparse
import io
import signal
import sys

from bench.harness import Config, run

WORKLOADS = ("w1", "w2", "w3", "w4", "w5")
SETS = (10, 105)  # Synthea sets (960 resources each) of the W2 growth and main datasets
QUICK_SETS = (1, 1)  # one dataset, no W2 growth run


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--workload", nargs="+", choices=WORKLOADS, default=list(WORKLOADS))
    parser.add_argument("--duration", type=int, default=10, help="seconds per measured trial")
    parser.add_argument("--pairs", type=int, default=5, help="baseline/candidate pairs")
    parser.add_argument("--warmup", type=int, default=3, help="discarded seconds before each trial")
    parser.add_argument("--connections", type=int, default=16, help="keep-alive connections")
    parser.add_argument("--seed", type=int, default=1000, help="Observations seeded for W1")
    parser.add_argument("--no-pin", action="store_true", help="do not pin processes to CPUs")
    parser.add_argument(
        "--retry-writes",
        action="store_true",
        help="keep the driver's retryable writes on, as deployed (slows SecantusDB; see docs)",
    )
    parser.add_argument(
        "--sets",
        type=int,
        nargs=2,
        default=SETS,
        metavar=("SMALL", "LARGE"),
        help="Synthea clone sets (960 resources each, plus a 957-resource W5 patient) of the W2"
        " growth and the main dataset (W2, W4, W5)",
    )
    parser.add_argument(
        "--rebuild", action="store_true", help="rebuild the cached datasets (bench/.cache/)"
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke run (~50 s): 2 pairs of 1 s trials, seed 200, a 1-set dataset, no W2 growth",
    )
    args = parser.parse_args(argv)
    if isinstance(sys.stdout, io.TextIOWrapper):
        sys.stdout.reconfigure(line_buffering=True)  # progress as it happens, also in a pipe
    if not 1 <= args.sets[0] < args.sets[1]:
        parser.error("--sets SMALL LARGE needs 1 <= SMALL < LARGE")
    if args.quick:
        args.duration, args.pairs, args.warmup, args.seed = 1, 2, 0, 200
        args.sets = QUICK_SETS
    if min(args.duration, args.pairs, args.connections, args.seed) < 1 or args.warmup < 0:
        parser.error("--duration, --pairs, --connections and --seed must be >= 1")
    config = Config(
        workloads=args.workload,
        duration=args.duration,
        pairs=args.pairs,
        warmup=args.warmup,
        connections=args.connections,
        seed=args.seed,
        pin=not args.no_pin,
        retry_writes=args.retry_writes,
        sets=(args.sets[0], args.sets[1]),
        rebuild=args.rebuild,
        quick=args.quick,
    )
    # SIGTERM unwinds like Ctrl-C, so the server and the database are stopped, not orphaned.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    return run(config, argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
