"""``lossaug advise``: its options (every ``lossaug train`` option, plus what the advice needs) and its command."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lossaug.cli.options import UsageError, add_config_options, config_from_args
from lossaug.run.config import PRESETS

__all__ = ["add_advise_command", "cmd_advise"]

DESCRIPTION = (
    "Does loss-aware selection (or gating, an M sweep, weighted candidates, another setting) beat simply training "
    "the baseline longer, on your data and at your compute? advise calibrates (the cost ratio of every arm by "
    "lossaug bench, one timed baseline epoch), picks the baseline budgets that bracket every arm's compute, then "
    "trains one seed at a time (a trunk, every arm branched from it, the budgets) and after each seed reads an "
    "anytime-valid 95% confidence sequence for each arm's difference against the same seed's baseline curve at "
    "the arm's compute (Bonferroni over arms and budgets). It stops when every arm is resolved (better, worse, "
    "or equivalent within --margin), when the next seed would not finish within --time, at --max-seeds, or on "
    "Ctrl-C, and writes OUT/advice.md, advice.json and frontier.png. Running the same command again continues."
)


ADVISE_OUT_HELP = (
    "the advice's folder: its runs, advice.md, advice.json and frontier.png; the same command again continues "
    "(default: runs/advise)"
)


def _csv(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


def _ratios(text: str) -> dict[str, float]:
    ratios = {}
    for part in _csv(text):
        kind, _, value = part.partition("=")
        try:
            ratios[kind.strip()] = float(value)
        except ValueError:
            message = f"expected KIND=R pairs such as gated=1.5,weighted=4.2, got {text!r}"
            raise argparse.ArgumentTypeError(message) from None
    return ratios


def add_advise_command(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "advise",
        help="use selection, or train longer? answered on your data within --time",
        description=DESCRIPTION,
        epilog="example: lossaug advise --dataset audio-folder --data mydata/ --test-fraction 0.2 --epochs 15 "
        "--time 45m  (the advice: OUT/advice.md; the same command again continues it)",
    )
    own = parser.add_argument_group("advise")
    own.add_argument(
        "--time",
        required=True,
        metavar="DURATION",
        help="wall-clock for this call of advise, calibration included: 45m, 1h30m, 90s, 2h (required); a "
        "re-run continues the advice with its own --time",
    )
    own.add_argument(
        "--arms",
        type=_csv,
        metavar="ARM,...",
        help="selection arms to weigh against training longer (default: proposed,gated,proposed-m2); "
        "any arm lossaug compare knows: proposed, gated, gated-Q, proposed-mM, weighted, "
        "weighted-equal-time, weighted-uniform-equal-time, maxup",
    )
    own.add_argument(
        "--settings",
        type=_csv,
        metavar="S,...",
        help="augmentation settings, each with its own baseline curve (default: A)",
    )
    own.add_argument(
        "--margin", type=float, metavar="POINTS", help="equivalence margin δ in percentage points (default: 0.5)"
    )
    own.add_argument("--max-seeds", type=int, metavar="N", help="stop after N seeds at most (default: 30)")
    own.add_argument(
        "--branch-at",
        type=float,
        metavar="F",
        help="fraction of the baseline's steps every arm shares before branching (default: 0.5)",
    )
    own.add_argument(
        "--cost-ratio",
        type=float,
        metavar="R",
        help="declared cost of a proposed step in baseline steps (default: measured by lossaug bench)",
    )
    own.add_argument(
        "--cost-ratios",
        type=_ratios,
        metavar="KIND=R,...",
        help="declared cost ratios of other step kinds, e.g. gated=1.5,weighted=4.2 (default: benched)",
    )
    parser.add_argument("--config", metavar="FILE.toml", help="read train options from a TOML file")
    parser.add_argument("--preset", choices=sorted(PRESETS), help="start from a named preset")
    add_config_options(parser, out_help=ADVISE_OUT_HELP)
    parser.set_defaults(func=cmd_advise)


def cmd_advise(args: argparse.Namespace) -> int:
    from lossaug.advise.plan import DEFAULT_ARMS, AdviseConfig, parse_duration
    from lossaug.advise.report import advice_markdown
    from lossaug.advise.run import run_advise
    from lossaug.cli.commands import _reporter, stop_exit_code

    for name, instead in (
        ("method", "--arms"),
        ("setting", "--settings"),
        ("stop_at", "--branch-at"),
        ("branch_from", "--branch-at"),
    ):
        if getattr(args, name, None) is not None:
            flag = "--" + name.replace("_", "-")
            raise UsageError(f"advise sets {flag} per arm; use {instead} instead")
    seconds = parse_duration(args.time)
    out = getattr(args, "out", None) or "runs/advise"
    if Path(out).exists() and not Path(out).is_dir():
        raise UsageError(f"--out {out} exists and is not a directory")
    config = AdviseConfig(
        base=config_from_args(args),
        time=seconds,
        out=out,
        arms=args.arms or DEFAULT_ARMS,
        settings=args.settings or ("A",),
        margin=(0.5 if args.margin is None else args.margin) / 100,
        max_seeds=30 if args.max_seeds is None else args.max_seeds,
        branch_at=0.5 if args.branch_at is None else args.branch_at,
        cost_ratio=args.cost_ratio,
        cost_ratios=args.cost_ratios or {},
    )
    from lossaug.run.train import NonFiniteError, TrainingInterrupted

    try:
        advice = run_advise(config, reporter=_reporter())
    except (NonFiniteError, TrainingInterrupted) as stop:  # during calibration, or a seed's run diverged
        return stop_exit_code(stop, "run the same advise command again to continue where it stopped")
    print(advice_markdown(advice.record))
    print(f"advice: {Path(out) / 'advice.md'}, advice.json, frontier.png", file=sys.stderr)
    if advice.interrupted is not None:
        return stop_exit_code(advice.interrupted, "run the same advise command again to continue where it stopped")
    return 0
