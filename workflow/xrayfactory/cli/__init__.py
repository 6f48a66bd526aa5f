"""`python -m xrayfactory <rule> ...`: every workflow step, runnable and debuggable by hand.

One module per rule file (workflow/rules/<stage>.smk -> cli/<stage>.py), one subcommand per
rule, named like it (`train_detector` -> `train-detector`). A handler parses its arguments and
calls one package function with plain, typed arguments. Settings that come from the config are
passed as JSON (`--settings`), so a rule's params show exactly what the step used, and a change
in them reruns the step.
"""

from __future__ import annotations

import argparse
import logging
import sys

from xrayfactory.cli import cohort, datasets, detection, imaging, study, synth2d, synth3d
from xrayfactory.core.errors import InputError

STAGES = (cohort, imaging, synth3d, synth2d, detection, study, datasets)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="xrayfactory", description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for stage in STAGES:
        stage.add_parsers(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr
    )
    args = parser().parse_args(argv)
    if args.threads > 0:
        import torch

        torch.set_num_threads(args.threads)
    try:
        args.handler(args)
    except InputError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0
