"""Command line: ``lossaug train`` (every ``TrainConfig`` field is an option), ``compare``, ``bench``, ``report``,
``show`` and ``demo``, and ``predict``, ``evaluate`` and ``export`` (``cli.use``); ``main`` is the entry point.

With ``cli.options`` (options and config files) and ``cli.commands`` (what each command does), the only code that
reads argv, the environment or config files. Bad input (``UsageError``, ``lossaug.errors.InputError``) and
file-system errors (``OSError``) print one line naming the culprit and exit with status 2; set ``LOSSAUG_DEBUG=1``
to see the traceback instead. Any other exception is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import sys
import warnings
from collections.abc import Sequence
from typing import NoReturn

from lossaug.advise.cli import add_advise_command
from lossaug.cli.commands import cmd_bench, cmd_compare, cmd_demo, cmd_report, cmd_show, cmd_train
from lossaug.cli.options import (
    UsageError,
    add_config_options,
    config_from_args,
    default_cache_dir,
    load_config_file,
)
from lossaug.cli.use import add_use_commands
from lossaug.errors import InputError
from lossaug.models import MODELS as MODEL_NAMES
from lossaug.models.user import FACTORY_FORM
from lossaug.run.config import PRESETS

__all__ = [
    "UsageError",
    "add_config_options",
    "build_parser",
    "config_from_args",
    "default_cache_dir",
    "load_config_file",
    "main",
]


class _Parser(argparse.ArgumentParser):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        # A value such as "-1,1" or "-1e300" is a (bad) value, for validation to refuse by name; argparse's own
        # pattern takes only "-1" and "-.5" for numbers and reports the rest as "expected one argument".
        self._negative_number_matcher = re.compile(r"^-\.?\d[\d.,eE+-]*$")

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see '{self.prog} --help')")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="lossaug", description="Loss-aware augmentation selection: train, compare, inspect.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_Parser)
    _add_train(sub)
    _add_compare(sub)
    add_advise_command(sub)
    _add_bench(sub)
    _add_report(sub)
    _add_show(sub)
    _add_demo(sub)
    add_use_commands(sub)  # predict, evaluate, export
    return parser


def _add_train(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "train",
        help="train a classifier (baseline, proposed or maxup)",
        description="Train a classifier with loss-aware augmentation selection. Precedence: defaults < --preset "
        "< --config file < options.",
    )
    parser.add_argument("--config", metavar="FILE.toml", help="read options from a TOML file")
    parser.add_argument("--preset", choices=sorted(PRESETS), help="start from a named preset (seed: published)")
    parser.add_argument(
        "--resume",
        metavar="RUN_DIR|auto",
        help="continue RUN_DIR from its newest valid checkpoint (its saved options, overridden by those typed); "
        "'auto': resume --out if it holds a checkpoint, else start there",
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="start over in an --out that holds a run: the files lossaug wrote for it (config, metrics, checkpoints, "
        "plots) are removed, once the new run is set up; nothing else in --out is",
    )
    add_config_options(parser)
    parser.set_defaults(func=cmd_train)


COMPARE_OUT_HELP = (
    "the comparison's directory (required without --protocol): a run directory per setting, arm and seed, and the "
    "summary; re-running with the same DIR skips finished runs and resumes interrupted ones"
)


def _add_compare(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "compare",
        help="run arms x settings x seeds; report paired differences with intervals, verdicts and time",
        description="Run baseline, proposed, maxup and baseline-equal-time (the baseline given the proposed arm's "
        "compute: E*F + E*(1-F)*R epochs for cost ratio R) for each setting and seed, sequentially into --out; "
        "re-running skips finished runs and resumes interrupted ones. With --branch-at F every arm continues from "
        "the baseline's checkpoint at fraction F of its steps. Every train option sets what the arms share "
        "(precedence: defaults < --preset < --config < options). --protocol FILE.toml runs a pre-registered "
        "protocol ([compare]: out, arms, settings, seeds, budgets, branch_at, cost_ratio (number, 'bench' or a "
        "table per step kind), margin_points, allow_mixed_commits, allow_out_of_range; [train]: train options) and "
        "takes no other option but --seeds, a share of its seeds (to run one protocol in several processes; a last "
        "call without --seeds summarises them all). Writes summary.md, summary.json and forest.png (and frontier.png "
        "with --budgets).",
    )
    parser.add_argument(
        "--protocol",
        metavar="FILE.toml",
        help="run a pre-registered protocol file; no other option but --seeds (a share of its seeds)",
    )
    parser.add_argument(
        "--arms",
        type=_csv(str),
        default=None,
        help="comma-separated arms (default: baseline,proposed,maxup,baseline-equal-time); also gated, weighted, "
        "weighted-equal-time, weighted-uniform-equal-time (its weights uniform), gated-Q (another Q) and "
        "proposed-mM (M candidates: an M sweep)",
    )
    parser.add_argument("--settings", type=_csv(str), default=None, help="comma-separated settings (default: A)")
    parser.add_argument("--seeds", type=_csv(int), default=None, help="comma-separated seeds (default: 0,1,2)")
    parser.add_argument(
        "--budgets",
        type=_csv(float),
        default=None,
        metavar="B,B,...",
        help="the baseline at these compute budgets too (its tail after --branch-at stretched B times; 1 is the "
        "baseline), each selection arm placed at its own compute: the frontier, its verdicts and frontier.png "
        "(default: none)",
    )
    parser.add_argument(
        "--branch-at",
        type=float,
        default=None,
        metavar="F",
        help="fraction of the baseline's steps every arm shares before branching, in [0, 1) "
        "(default: 0, every arm from the start)",
    )
    parser.add_argument(
        "--cost-ratio",
        type=float,
        default=None,
        metavar="R",
        help="cost of a proposed step in baseline steps, sizing baseline-equal-time (default: "
        "measured once by lossaug bench at the start, kept in OUT/cost_ratio.json)",
    )
    parser.add_argument(
        "--margin",
        type=float,
        default=None,
        metavar="POINTS",
        help="equivalence margin δ in percentage points (default: 0.5)",
    )
    parser.add_argument(
        "--allow-mixed-commits",
        action="store_true",
        default=None,
        help="summarise runs made by different git commits (refused by default)",
    )
    parser.add_argument(
        "--allow-out-of-range",
        action="store_true",
        default=None,
        help="run even when the budgets cannot bracket a selection arm's compute (refused once the cost ratios are "
        "known, naming budgets that would; its equal-compute verdict is then 'out of range')",
    )
    parser.add_argument("--config", metavar="FILE.toml", help="read shared train options from a TOML file")
    parser.add_argument("--preset", choices=sorted(PRESETS), help="start from a named preset")
    add_config_options(parser, out_help=COMPARE_OUT_HELP)
    parser.set_defaults(func=cmd_compare)


def _add_bench(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "bench",
        help="time the training step of baseline and proposed for M candidates (cost of selection)",
        description="Time, in one process and interleaved, the training step with M = 1 (baseline), 2, 4, 8 "
        "candidates, the training step alone and the scoring forward alone; print R(M), the floor 1 + M*c and "
        "the efficiency floor / R(M), with where the time goes. --quick finishes within 60 s on 2 CPU cores.",
    )
    parser.add_argument(
        "--model",
        metavar="NAME|" + FACTORY_FORM,
        help=f"network: {', '.join(sorted(MODEL_NAMES))} or your own factory (default: preact_resnet18)",
    )
    parser.add_argument("--width", type=int, help="model width (default: the model's)")
    parser.add_argument("--batch-size", type=int, help="images per step (default: 128)")
    parser.add_argument(
        "--candidates",
        dest="candidate_counts",
        type=_csv(int),
        help="comma-separated M values, must include 1 (default: 1,2,4,8)",
    )
    parser.add_argument(
        "--setting", choices=("A", "B", "C"), help="augmentation setting (C: A + a TrivialAugment-style op; default: A)"
    )
    parser.add_argument("--augment", help="augmentation spec replacing the setting's, e.g. 'flip,crop,mixup:0.2'")
    parser.add_argument("--image-size", type=int, help="image side S in px, images (B,3,S,S) (default: 32)")
    parser.add_argument(
        "--clip-samples", type=int, help="audio models: clip length T in samples, waveforms (B,1,T) (default: 8000)"
    )
    parser.add_argument(
        "--sample-rate", type=int, help="audio models: the clips' rate in Hz, the model's front end's (default: 8000)"
    )
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), help="device (default: auto)")
    parser.add_argument("--repeats", type=int, help="timed repeats per measurement (default: 20)")
    parser.add_argument("--warmup", type=int, help="untimed repeats first (default: 3)")
    parser.add_argument("--score-chunk", type=int, help="candidates per scoring pass (default: as train picks)")
    parser.add_argument("--seed", type=int, help="seed (default: 0)")
    parser.add_argument("--quick", action="store_true", default=None, help="small CPU model, few repeats (< 60 s)")
    parser.add_argument("--proxy-model", metavar="NAME|" + FACTORY_FORM, help="also time scoring by this proxy network")
    parser.add_argument("--proxy-width", type=int, help="proxy width (default: the proxy model's)")
    parser.add_argument("--select-every", type=_csv(int), help="derived cost of selecting one step in k (default: 3)")
    parser.add_argument(
        "--select-from", type=_csv(float), help="derived cost of selecting after fraction f (default: 0.5)"
    )
    parser.add_argument(
        "--score-fractions", type=_csv(float), help="measured cost of stale-loss gating at each Q (default: 0.25,0.5)"
    )
    parser.add_argument(
        "--weighted",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="measure the weighted mode's step (default: on)",
    )
    parser.add_argument("--threads", type=int, help="torch CPU threads (1 gives stable timings on a busy machine)")
    parser.add_argument("--out", metavar="FILE.json", help="also write the result as JSON")
    parser.set_defaults(func=cmd_bench)


def _add_report(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "report",
        help="plot test error vs epoch and wall-clock, and selection telemetry, for run directories",
        description="Read metrics.jsonl of each RUN_DIR and draw one PNG: test error against epoch and training "
        "wall-clock, selection entropy and chosen-score ratio against epoch.",
    )
    parser.add_argument("run_dirs", nargs="+", metavar="RUN_DIR")
    parser.add_argument(
        "--out",
        help="figure to write (.png, .pdf, .svg) or a folder for report.png (default: RUN_DIR/report.png; for "
        "several runs, report.png in the folder that holds them all)",
    )
    parser.add_argument(
        "--per-class", action="store_true", help="also print each run's per-class test errors (from final.json)"
    )
    parser.add_argument("--title", default="", help="figure title")
    parser.set_defaults(func=cmd_report)


def _add_show(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "show",
        help="draw M candidates of a few test images with a trained run's scores and selection probabilities",
        description="Load a run's checkpoint and test data, make CANDIDATES augmented candidates of IMAGES test "
        "images with the run's augmentation, score them with the model at the run's temperature (temperature 1 "
        "for a baseline run) and draw a PNG grid: rows = images, columns = candidates.",
    )
    parser.add_argument("checkpoint", metavar="CHECKPOINT", help="a checkpoint.pt, or a run directory")
    parser.add_argument(
        "--trust-code",
        metavar="MODULE",
        help="import and run MODULE, the Python module of a run "
        "trained with --model MODULE:FACTORY (never imported without it)",
    )
    parser.add_argument(
        "--images", type=int, help="test images, one row each (default: 6, or all of a smaller test set)"
    )
    parser.add_argument("--candidates", type=int, default=4, help="candidates per image (default: 4)")
    parser.add_argument(
        "--out", help="figure to write (.png, .pdf, .svg) or a folder (default: candidates.png in the run directory)"
    )
    parser.add_argument("--seed", type=int, default=0, help="picks the images and the augmentations (default: 0)")
    parser.add_argument("--data", help="the run's data path, if it moved (default: the path the run used)")
    parser.add_argument("--cache-dir", help="data cache (default: $LOSSAUG_CACHE, else ~/.cache/lossaug)")
    parser.set_defaults(func=cmd_show)


def _add_demo(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "demo",
        help="baseline vs proposed on the bundled mini CIFAR-10, sized to a wall-clock budget (under 5 minutes on "
        "2 CPU cores)",
        description="Train baseline and proposed on the bundled mini CIFAR-10 with the same small CNN, alternating "
        "epoch by epoch so that both see the same machine load; print a table of error, training time and the "
        "median per-step cost ratio, and write a comparison plot. Unless --epochs is given, a short calibration "
        "times each arm's step and picks the epochs (1 to 25) that fit --budget.",
    )
    parser.add_argument("--out", help="output directory (default: runs/demo)")
    parser.add_argument("--epochs", type=int, help="epochs per arm, skipping the calibration (default: fit --budget)")
    parser.add_argument(
        "--budget",
        type=float,
        metavar="SECONDS",
        help="wall-clock for the whole demo, calibration included "
        "(default: 240, which leaves room for start-up and a misestimate within 5 minutes)",
    )
    parser.add_argument("--width", type=int, help="cnn width (default: 16)")
    parser.add_argument("--candidates", type=int, help="M for the proposed arm (default: 4)")
    parser.add_argument("--seed", type=int, help="seed (default: 0)")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), help="device (default: auto)")
    parser.add_argument(
        "--overwrite", action="store_true", default=None, help="replace the runs of an earlier demo in --out"
    )
    parser.set_defaults(func=cmd_demo)


def _csv(kind):
    def parse(text: str) -> tuple:
        try:
            return tuple(kind(part) for part in text.split(",") if part.strip())
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected a comma-separated list of {kind.__name__}, got {text!r}"
            ) from None

    parse.__name__ = f"{kind.__name__} list"
    return parse


def _install_warning_format() -> None:
    """Print each Python warning once per command, as one line ``lossaug: warning: <message>`` on stderr.

    Python's own format adds the source file and line, and its "default" filter remembers a warning per line of
    the caller, not per message: a skipped checkpoint, looked up by the command and again by ``train``, printed
    twice. Here the message text decides.
    """
    seen: set[tuple[type[Warning], str]] = set()

    def show(message, category, filename, lineno, file=None, line=None) -> None:  # warnings.showwarning signature
        text = " ".join(str(message).split())
        if (category, text) in seen:
            return
        seen.add((category, text))
        with contextlib.suppress(OSError, ValueError):  # stderr closed or gone: nowhere to warn
            (file or sys.stderr).write(f"lossaug: warning: {text}\n")

    warnings.showwarning = show


def main(argv: Sequence[str] | None = None) -> int:
    _install_warning_format()
    try:
        args = build_parser().parse_args(argv)
        return args.func(args)
    # Bad input, a missing file, a full disk: one line. Any other exception (a bare ValueError included) is a bug:
    # its traceback is the report.
    except (UsageError, InputError, OSError) as error:
        if os.environ.get("LOSSAUG_DEBUG"):
            raise
        print(f"lossaug: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("lossaug: interrupted", file=sys.stderr)
        return 130
