"""Command line: ``lossaug train`` (every ``TrainConfig`` field is an option) and ``lossaug demo``.

The only module that reads argv, the environment or config files. Errors in what the user typed or pointed at
print one line naming the culprit and exit with status 2; set ``LOSSAUG_DEBUG=1`` to see the traceback instead.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import math
import os
import sys
import time
import types
import typing
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from lossaug.config import PRESETS, RENAMED, TrainConfig
from lossaug.models import MODELS as MODEL_NAMES

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


class UsageError(Exception):
    """Bad command-line input: reported as one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see '{self.prog} --help')")


def default_cache_dir() -> Path:
    """``$LOSSAUG_CACHE``, else ``$XDG_CACHE_HOME/lossaug``, else ``~/.cache/lossaug``."""
    if os.environ.get("LOSSAUG_CACHE"):
        return Path(os.environ["LOSSAUG_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "lossaug"


# ---------------------------------------------------------------- TrainConfig <-> options


def _field_type(f: dataclasses.Field) -> tuple[type, bool]:
    """The scalar type of a config field and whether it may be None."""
    hint = typing.get_type_hints(TrainConfig)[f.name]
    args = typing.get_args(hint)
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        scalar = next(a for a in args if a is not type(None))
        return scalar, type(None) in args
    return hint, False


def _converter(f: dataclasses.Field):
    scalar, optional = _field_type(f)

    def convert(text: Any) -> Any:
        if optional and (text is None or (isinstance(text, str) and text.lower() == "none")):
            return None
        if scalar is int and isinstance(text, (float, bool)):
            raise ValueError(f"expected an integer, got {text!r}")
        if scalar is float and isinstance(text, str) and text.lower() in ("inf", "infinity"):
            return math.inf
        return scalar(text)

    convert.__name__ = scalar.__name__  # argparse names the type in its error message
    return convert


def _option(name: str) -> str:
    return "--" + name.replace("_", "-")


def add_config_options(parser: argparse.ArgumentParser) -> None:
    """One option per ``TrainConfig`` field, defaults suppressed so that only typed options override. A bool
    field is a flag: ``--name`` when it defaults to False, ``--no-name`` when it defaults to True."""
    for f in dataclasses.fields(TrainConfig):
        if f.type in (bool, "bool"):
            flag = _option(f.name) if not f.default else "--no-" + f.name.replace("_", "-")
            action = "store_false" if f.default else "store_true"
            parser.add_argument(flag, dest=f.name, action=action, default=argparse.SUPPRESS, help=f.metadata["help"])
            continue
        choices = f.metadata.get("choices")
        default = f.default if f.default is not None else "none"
        parser.add_argument(
            f.metadata.get("option", _option(f.name)),
            dest=f.name,
            type=_converter(f),
            choices=choices,
            default=argparse.SUPPRESS,
            metavar="{" + ",".join(choices) + "}" if choices else f.name.upper(),
            help=f"{f.metadata['help']} (default: {default})",
        )


def load_config_file(path: Path) -> dict[str, Any]:
    """Fields from a TOML file, keys named like the options (``batch-size`` or ``batch_size``).

    Layout: every option at the top level of the file, or every option in a ``[train]`` table (the layout of a
    ``lossaug compare --protocol`` file, whose ``[compare]`` table that command reads and this one skips). Option
    keys at the top level beside a ``[train]`` table are an error naming them, as is any unknown key. Values are
    checked as TOML types: a float option takes a TOML number (``lr = 1`` is 1.0; ``inf`` is a TOML float), an
    integer option an integer, a text option a string, a flag ``true`` or ``false``; ``"none"`` clears an option
    that may be None. A boolean or a string where a number belongs (``lr = true``, ``lr = "0.1"``) is an error
    naming the file and the key.
    """
    try:
        raw = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise UsageError(f"config file {path} does not exist") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise UsageError(f"config file {path} is not valid TOML: {error}") from None
    if "train" in raw:
        if not isinstance(raw["train"], dict):
            raise UsageError(f"config file {path}: 'train' must be a [train] table of options")
        misplaced = sorted(k for k in raw if k not in ("train", "compare"))
        if misplaced:
            raise UsageError(
                f"config file {path} has a [train] table and also options outside it: {misplaced}; put every "
                "option in [train] (or drop the table header)"
            )
        raw = raw["train"]
    kinds = {bool: "a boolean", int: "an integer", float: "a float", str: "a string", dict: "a table", list: "an array"}
    fields = {f.name: f for f in dataclasses.fields(TrainConfig)}
    values: dict[str, Any] = {}
    for key, value in raw.items():
        name = key.replace("-", "_")
        name = RENAMED.get(name, name)
        if name not in fields:
            raise UsageError(f"unknown option {key!r} in config file {path}; valid: {sorted(fields)}")
        if name in values:
            raise UsageError(f"option {name!r} is given twice in config file {path} (as {key!r} too)")
        scalar, optional = _field_type(fields[name])
        kind = kinds.get(type(value), f"a {type(value).__name__}")
        if optional and isinstance(value, str) and value.lower() == "none":
            values[name] = None
            continue
        if scalar is float and type(value) in (int, float):
            values[name] = float(value)
        elif scalar in (bool, int, str) and type(value) is scalar:
            values[name] = value
        else:
            expected = kinds.get(scalar, scalar.__name__) + (' or "none"' if optional else "")
            raise UsageError(f"bad value {value!r} for {key!r} in config file {path}: expected {expected}, got {kind}")
        choices = fields[name].metadata.get("choices")
        if choices and values[name] not in choices:
            raise UsageError(f"bad value {value!r} for {key!r} in config file {path}; choose from {list(choices)}")
    return values


def config_from_args(args: argparse.Namespace, base: dict[str, Any] | None = None) -> TrainConfig:
    """Defaults < ``base`` (a resumed run's config) or ``--preset`` < ``--config`` file < options typed."""
    values: dict[str, Any] = dict(base) if base else dict(PRESETS[args.preset]) if args.preset else {}
    if args.config:
        values.update(load_config_file(Path(args.config)))
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    values.update({k: v for k, v in vars(args).items() if k in names})
    values.setdefault("cache_dir", str(default_cache_dir()))
    if not values.get("out"):
        stamp = time.strftime("%Y%m%d-%H%M%S")
        values["out"] = str(
            Path("runs") / f"{stamp}-{values.get('dataset', 'mini')}-{values.get('method', 'proposed')}"
        )
    return TrainConfig(**values)


# ---------------------------------------------------------------- commands


def _reporter():
    from lossaug.progress import ConsoleReporter

    return ConsoleReporter(sys.stderr)


def _resume_target(args: argparse.Namespace) -> tuple[Path | None, dict[str, Any] | None]:
    """For ``--resume``: the run directory and its saved config, or ``(None, None)`` to start afresh."""
    from lossaug.checkpoint import has_checkpoint, newest_valid_checkpoint

    if not args.resume:
        return None, None
    if args.resume == "auto":
        if not getattr(args, "out", None):
            raise UsageError("--resume auto needs --out RUN_DIR (resume there if it holds a checkpoint, else start)")
        run_dir = Path(args.out)
        if not has_checkpoint(run_dir):
            return None, None
    else:
        run_dir = Path(args.resume)
        if not run_dir.is_dir():
            raise UsageError(f"--resume {run_dir}: no such run directory")
        if getattr(args, "out", None) and Path(args.out).resolve() != run_dir.resolve():
            raise UsageError(f"--resume {run_dir} and --out {args.out} disagree; a resumed run stays in its directory")
    _, checkpoint = newest_valid_checkpoint(run_dir)
    try:
        saved = dataclasses.asdict(TrainConfig.from_dict(checkpoint["config"]))
    except ValueError as error:
        raise UsageError(f"checkpoint in {run_dir} has {error}") from None
    return run_dir, {**saved, "out": str(run_dir)}


def _join_process_group(device: str) -> int:
    """Under torchrun (``WORLD_SIZE`` > 1) join the process group, NCCL on CUDA and gloo on CPU, with this
    process on GPU ``LOCAL_RANK``; returns the rank (0 without torchrun)."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return 0
    import torch
    import torch.distributed as dist

    cuda = device != "cpu" and torch.cuda.is_available()
    if cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    if not dist.is_initialized():
        dist.init_process_group("nccl" if cuda else "gloo")
    return dist.get_rank()


def cmd_train(args: argparse.Namespace) -> int:
    from lossaug.train import validate_config

    run_dir, saved = _resume_target(args)
    config = config_from_args(args, saved)
    rank = _join_process_group(config.device)
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        import torch.distributed as dist

        out = [config.out]  # the default run directory has a timestamp: take rank 0's
        dist.broadcast_object_list(out, src=0)
        config = dataclasses.replace(config, out=out[0])
    validate_config(config)
    try:
        overwrite = args.overwrite or (
            args.resume == "auto" and run_dir is None
        )  # auto: nothing to resume, start there
        code = _train_and_report(config, rank, resume=run_dir is not None, overwrite=overwrite)
    except BaseException:
        _leave_process_group(wait=False)  # another rank may never reach a barrier
        raise
    _leave_process_group(wait=True)
    return code


def _leave_process_group(wait: bool) -> None:
    """Shut the process group down (after waiting for every rank): gloo's threads must not outlive it (seen
    here: 'terminate called without an active exception' and SIGABRT at exit otherwise)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        if wait:
            dist.barrier()
        dist.destroy_process_group()


def _train_and_report(config: TrainConfig, rank: int, resume: bool, overwrite: bool) -> int:
    from lossaug.train import NonFiniteError, TrainingInterrupted, train

    try:
        result = train(config, reporter=_reporter() if rank == 0 else None, resume=resume, overwrite=overwrite)
    except TrainingInterrupted as stop:
        print(f"lossaug: {stop}", file=sys.stderr)
        if stop.checkpoint is not None:
            print(f"lossaug: resume with: lossaug train --resume {config.out}", file=sys.stderr)
        return stop.exit_code
    except NonFiniteError as error:
        print(f"lossaug: error: {error}", file=sys.stderr)
        return 1
    if rank > 0:
        return 0
    print(
        f"test error {result.test_error:.2%}  train error {result.train_error:.2%}  "
        f"{result.seconds:.1f}s training ({result.images_per_second:.0f} img/s)  -> {result.out_dir}"
    )
    return 0


DEMO_NOTE = """\
What this shows: both arms ran the same model, data, epochs and seed, so the time ratio is the price of scoring
{candidates} candidates per image on this device. What it cannot show: whether selection helps. This is one seed
of a small CNN on 5,000 images for {epochs} epochs, far from the published regime (PreActResNet-18, 50,000 images,
200 epochs); a single seed cannot tell an effect of a point or two from seed-to-seed noise. Settle that with
several seeds per arm."""


def cmd_demo(args: argparse.Namespace) -> int:
    from lossaug.plots import plot_curves
    from lossaug.train import train

    out = Path(args.out)
    common = dict(
        dataset="mini",
        model="cnn",
        width=args.width,
        setting="A",
        epochs=args.epochs,
        batch_size=128,
        lr=0.2,
        seed=args.seed,
        device=args.device,
        num_candidates=args.candidates,
    )
    results = {}
    for method in ("baseline", "proposed"):
        config = TrainConfig(**common, method=method, out=str(out / method))
        results[method] = train(config, reporter=_reporter())
    base = results["baseline"]
    rows = [("method", "test error", "train error", "train time", "time ratio")]
    for method, r in results.items():
        rows.append(
            (
                method,
                f"{r.test_error:.2%}",
                f"{r.train_error:.2%}",
                f"{r.seconds:.1f}s",
                f"{r.seconds / base.seconds:.2f}x",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    print(
        f"\nlossaug demo: mini CIFAR-10, cnn width {args.width}, {args.epochs} epochs, seed {args.seed}, {base.device}"
    )
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)))
    plot = plot_curves({m: r.metrics for m, r in results.items()}, out / "comparison.png", title="lossaug demo")
    summary = {
        m: {
            "test_error": r.test_error,
            "train_error": r.train_error,
            "seconds": r.seconds,
            "time_ratio": r.seconds / base.seconds,
            "run_dir": str(r.out_dir),
        }
        for m, r in results.items()
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"\nplot: {plot}\nsummary: {out / 'summary.json'}\n")
    print(DEMO_NOTE.format(candidates=args.candidates, epochs=args.epochs))
    return 0


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


def cmd_compare(args: argparse.Namespace) -> int:
    from lossaug.compare import ARMS, CompareConfig, config_from_protocol, run_compare, summary_markdown
    from lossaug.train import NonFiniteError, TrainingInterrupted

    if args.protocol:
        # A pre-registered protocol is run as committed: any other option would silently change it.
        options = {k: _option(k) for k in ("arms", "settings", "seeds", "config", "preset", "branch_at", "cost_ratio",
                                           "margin", "allow_mixed_commits")}  # fmt: skip
        options.update({f.name: f.metadata.get("option", _option(f.name)) for f in dataclasses.fields(TrainConfig)})
        typed = [option for name, option in options.items() if getattr(args, name, None) is not None]
        if typed:
            raise UsageError(f"--protocol {args.protocol} takes no other options, got {', '.join(typed)}; "
                             "edit (and commit) the protocol file instead")  # fmt: skip
        path = Path(args.protocol)
        try:
            raw = tomllib.loads(path.read_text())
        except FileNotFoundError:
            raise UsageError(f"protocol file {path} does not exist") from None
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
            raise UsageError(f"protocol file {path} is not valid TOML: {error}") from None
        if set(raw) != {"compare", "train"}:
            raise UsageError(f"protocol file {path} must hold a [compare] and a [train] table only, got {sorted(raw)}")
        base = TrainConfig(**{"cache_dir": str(default_cache_dir()), **load_config_file(path)})
        config = config_from_protocol(raw["compare"], base)
        Path(config.out).mkdir(parents=True, exist_ok=True)
        (Path(config.out) / "protocol.toml").write_text(path.read_text())  # the results carry what they ran
    else:
        if not getattr(args, "out", None):
            raise UsageError("lossaug compare needs --out DIR (re-running with the same DIR skips finished runs)")
        margin = 0.5 if args.margin is None else args.margin
        config = CompareConfig(
            base=config_from_args(args),
            out=args.out,
            arms=args.arms or ARMS,
            settings=args.settings or ("A",),
            seeds=args.seeds or (0, 1, 2),
            branch_at=args.branch_at or 0.0,
            cost_ratio=args.cost_ratio,
            margin=margin / 100,
            allow_mixed_commits=bool(args.allow_mixed_commits),
        )
    try:
        summary = run_compare(config, reporter=_reporter())
    except NonFiniteError as error:
        print(f"lossaug: error: {error}", file=sys.stderr)
        return 1
    except TrainingInterrupted as stop:
        print(f"lossaug: {stop}", file=sys.stderr)
        print("lossaug: run the same compare command again to continue where it stopped", file=sys.stderr)
        return stop.exit_code
    print(summary_markdown(summary))
    print(f"summary: {Path(config.out) / 'summary.md'}, summary.json and forest.png")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from lossaug.bench import BenchConfig, format_bench, run_bench

    if args.threads is not None:
        if args.threads < 1:
            raise UsageError(f"--threads must be >= 1, got {args.threads}")
        import torch

        torch.set_num_threads(args.threads)
    names = {f.name for f in dataclasses.fields(BenchConfig)}
    config = BenchConfig(**{k: v for k, v in vars(args).items() if k in names and v is not None})
    reporter = _reporter()
    result = run_bench(config, log=reporter.log)
    print(format_bench(result))
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result.to_json(), indent=2) + "\n")
        print(f"wrote {out}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from lossaug.plots import plot_report, read_run

    runs = {}
    for directory in args.run_dirs:
        label, records = read_run(Path(directory))
        runs[label if label not in runs else f"{label} [{directory}]"] = records
    path = plot_report(runs, Path(args.out), title=args.title)
    print(f"wrote {path}")
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    from lossaug.show import load_run, show_candidates

    cache_dir = Path(args.cache_dir) if args.cache_dir else default_cache_dir()
    run = load_run(Path(args.checkpoint), data=args.data, cache_dir=cache_dir)
    path = show_candidates(run, Path(args.out), num_images=args.images, num_candidates=args.candidates, seed=args.seed)
    print(f"wrote {path}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="lossaug", description="Loss-aware augmentation selection: train, compare, inspect.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_Parser)

    train_parser = sub.add_parser(
        "train",
        help="train a classifier (baseline, proposed or maxup)",
        description="Train a classifier with loss-aware augmentation selection. Precedence: defaults < --preset "
        "< --config file < options.",
    )
    train_parser.add_argument("--config", metavar="FILE.toml", help="read options from a TOML file")
    train_parser.add_argument("--preset", choices=sorted(PRESETS), help="start from a named preset (seed: published)")
    train_parser.add_argument(
        "--resume",
        metavar="RUN_DIR|auto",
        help="continue RUN_DIR from its newest valid checkpoint (its saved options, overridden by those typed); "
        "'auto': resume --out if it holds a checkpoint, else start there",
    )
    train_parser.add_argument(
        "--overwrite",
        action="store_true",
        help="start over in an --out that holds a run: its run files (config, metrics, checkpoints, plots) are removed",
    )
    add_config_options(train_parser)
    train_parser.set_defaults(func=cmd_train)

    compare = sub.add_parser(
        "compare",
        help="run arms x settings x seeds; report paired differences with intervals, verdicts and time",
        description="Run baseline, proposed, maxup and baseline-equal-time (the baseline given the proposed arm's "
        "compute: E*F + E*(1-F)*R epochs for cost ratio R) for each setting and seed, sequentially into --out; "
        "re-running skips finished runs and resumes interrupted ones. With --branch-at F every arm continues from "
        "the baseline's checkpoint at fraction F of its steps. Every train option sets what the arms share "
        "(precedence: defaults < --preset < --config < options). --protocol FILE.toml runs a pre-registered "
        "protocol ([compare]: out, arms, settings, seeds, branch_at, cost_ratio (number or 'bench'), margin_points, "
        "allow_mixed_commits; [train]: train options) and takes no other option. Writes summary.md, summary.json "
        "and forest.png.",
    )
    compare.add_argument("--protocol", metavar="FILE.toml",
                         help="run a pre-registered protocol file; no other option may be given")  # fmt: skip
    compare.add_argument("--arms", type=_csv(str), default=None,
                         help="comma-separated arms (default: all four)")  # fmt: skip
    compare.add_argument("--settings", type=_csv(str), default=None, help="comma-separated settings (default: A)")
    compare.add_argument("--seeds", type=_csv(int), default=None, help="comma-separated seeds (default: 0,1,2)")
    compare.add_argument("--branch-at", type=float, default=None, metavar="F",
                         help="fraction of the baseline's steps every arm shares before branching, in [0, 1) "
                         "(default: 0, every arm from the start)")  # fmt: skip
    compare.add_argument("--cost-ratio", type=float, default=None, metavar="R",
                         help="cost of a proposed step in baseline steps, sizing baseline-equal-time (default: "
                         "measured once by lossaug bench at the start, kept in OUT/cost_ratio.json)")  # fmt: skip
    compare.add_argument("--margin", type=float, default=None, metavar="POINTS",
                         help="equivalence margin δ in percentage points (default: 0.5)")  # fmt: skip
    compare.add_argument("--allow-mixed-commits", action="store_true", default=None,
                         help="summarise runs made by different git commits (refused by default)")  # fmt: skip
    compare.add_argument("--config", metavar="FILE.toml", help="read shared train options from a TOML file")
    compare.add_argument("--preset", choices=sorted(PRESETS), help="start from a named preset")
    add_config_options(compare)
    compare.set_defaults(func=cmd_compare)

    bench = sub.add_parser(
        "bench",
        help="time the training step of baseline and proposed for M candidates (cost of selection)",
        description="Time, in one process and interleaved, the training step with M = 1 (baseline), 2, 4, 8 "
        "candidates, the training step alone and the scoring forward alone; print R(M), the floor 1 + M*c and "
        "the efficiency floor / R(M), with where the time goes. --quick finishes within 60 s on 2 CPU cores.",
    )
    bench.add_argument("--model", choices=sorted(MODEL_NAMES), help="network (default: preact_resnet18)")
    bench.add_argument("--width", type=int, help="model width (default: the model's)")
    bench.add_argument("--batch-size", type=int, help="images per step (default: 128)")
    bench.add_argument(
        "--candidates", type=_csv(int), help="comma-separated M values, must include 1 (default: 1,2,4,8)"
    )
    bench.add_argument("--setting", choices=("A", "B"), help="augmentation setting (default: A)")
    bench.add_argument("--device", choices=("auto", "cpu", "cuda"), help="device (default: auto)")
    bench.add_argument("--repeats", type=int, help="timed repeats per measurement (default: 20)")
    bench.add_argument("--warmup", type=int, help="untimed repeats first (default: 3)")
    bench.add_argument("--score-chunk", type=int, help="candidates per scoring pass (default: as train picks)")
    bench.add_argument("--seed", type=int, help="seed (default: 0)")
    bench.add_argument("--quick", action="store_true", default=None, help="small CPU model, few repeats (< 60 s)")
    bench.add_argument("--proxy-model", choices=sorted(MODEL_NAMES), help="also time scoring by this proxy network")
    bench.add_argument("--proxy-width", type=int, help="proxy width (default: the proxy model's)")
    bench.add_argument("--select-every", type=_csv(int), help="derived cost of selecting one step in k (default: 3)")
    bench.add_argument(
        "--select-from", type=_csv(float), help="derived cost of selecting after fraction f (default: 0.5)"
    )
    bench.add_argument("--threads", type=int, help="torch CPU threads (1 gives stable timings on a busy machine)")
    bench.add_argument("--out", metavar="FILE.json", help="also write the result as JSON")
    bench.set_defaults(func=cmd_bench)

    report = sub.add_parser(
        "report",
        help="plot test error vs epoch and wall-clock, and selection telemetry, for run directories",
        description="Read metrics.jsonl of each RUN_DIR and draw one PNG: test error against epoch and training "
        "wall-clock, selection entropy and chosen-score ratio against epoch.",
    )
    report.add_argument("run_dirs", nargs="+", metavar="RUN_DIR")
    report.add_argument("--out", default="report.png", help="PNG to write (default: report.png)")
    report.add_argument("--title", default="", help="figure title")
    report.set_defaults(func=cmd_report)

    show = sub.add_parser(
        "show",
        help="draw M candidates of a few test images with a trained run's scores and selection probabilities",
        description="Load a run's checkpoint and test data, make CANDIDATES augmented candidates of IMAGES test "
        "images with the run's augmentation, score them with the model at the run's temperature (temperature 1 "
        "for a baseline run) and draw a PNG grid: rows = images, columns = candidates.",
    )
    show.add_argument("checkpoint", metavar="CHECKPOINT", help="a checkpoint.pt, or a run directory")
    show.add_argument("--images", type=int, default=6, help="test images, one row each (default: 6)")
    show.add_argument("--candidates", type=int, default=4, help="candidates per image (default: 4)")
    show.add_argument("--out", default="candidates.png", help="PNG to write (default: candidates.png)")
    show.add_argument("--seed", type=int, default=0, help="picks the images and the augmentations (default: 0)")
    show.add_argument("--data", help="the run's data path, if it moved (default: the path the run used)")
    show.add_argument("--cache-dir", help="data cache (default: $LOSSAUG_CACHE, else ~/.cache/lossaug)")
    show.set_defaults(func=cmd_show)

    demo = sub.add_parser(
        "demo",
        help="baseline vs proposed on the bundled mini CIFAR-10 (about 5 minutes on 2 CPU cores)",
        description="Train baseline and proposed on the bundled mini CIFAR-10 with the same small CNN, print a "
        "table of error and time, and write a comparison plot.",
    )
    demo.add_argument("--out", default="runs/demo", help="output directory (default: runs/demo)")
    demo.add_argument("--epochs", type=int, default=25, help="epochs per arm (default: 25)")
    demo.add_argument("--width", type=int, default=16, help="cnn width (default: 16)")
    demo.add_argument("--candidates", type=int, default=4, help="M for the proposed arm (default: 4)")
    demo.add_argument("--seed", type=int, default=0, help="seed (default: 0)")
    demo.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="device (default: auto)")
    demo.set_defaults(func=cmd_demo)
    return parser


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
    except (UsageError, ValueError, OSError) as error:  # bad input, a missing file, a full disk: one line
        if os.environ.get("LOSSAUG_DEBUG"):
            raise
        print(f"lossaug: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("lossaug: interrupted", file=sys.stderr)
        return 130
