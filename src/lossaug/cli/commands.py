"""What each ``lossaug`` subcommand does, given its parsed arguments; ``cli`` builds the parser and calls them.

Each ``cmd_*`` returns the process exit status. A run that stops early reports one line and exits with
``stop_exit_code``: 1 for a non-finite step, 128 + the signal number for SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lossaug.cli.options import UsageError, config_from_args, default_cache_dir, load_protocol_file, option_flag
from lossaug.errors import InputError
from lossaug.run.config import TrainConfig

if TYPE_CHECKING:
    from lossaug.run.train import NonFiniteError, TrainingInterrupted

__all__ = ["cmd_bench", "cmd_compare", "cmd_demo", "cmd_report", "cmd_show", "cmd_train", "stop_exit_code"]


def stop_exit_code(stop: NonFiniteError | TrainingInterrupted, resume_hint: str) -> int:
    """Report on stderr a run that stopped early and return the exit status: 1 for a non-finite step
    (``NonFiniteError``); for SIGTERM/SIGINT (``TrainingInterrupted``) 128 + the signal number, with
    ``resume_hint`` when a checkpoint was saved to resume from."""
    from lossaug.run.train import TrainingInterrupted

    if not isinstance(stop, TrainingInterrupted):
        print(f"lossaug: error: {stop}", file=sys.stderr)
        return 1
    print(f"lossaug: {stop}", file=sys.stderr)
    if stop.checkpoint is not None:
        print(f"lossaug: {resume_hint}", file=sys.stderr)
    return stop.exit_code


def _reporter():
    from lossaug.progress import ConsoleReporter

    return ConsoleReporter(sys.stderr)


def _resume_target(args: argparse.Namespace) -> tuple[Path | None, dict[str, Any] | None]:
    """For ``--resume``: the run directory and its saved config, or ``(None, None)`` to start afresh."""
    from lossaug.run.checkpoint import has_checkpoint, read_run_checkpoint

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
    _, checkpoint = read_run_checkpoint(run_dir)
    try:
        saved = dataclasses.asdict(TrainConfig.from_dict(checkpoint.config))
    except ValueError as error:
        raise UsageError(f"checkpoint in {run_dir} has {error}") from None
    return run_dir, {**saved, "out": str(run_dir)}


def _join_process_group(device: str) -> int:
    """Under torchrun (``WORLD_SIZE`` > 1) join the process group, NCCL on CUDA and gloo on CPU (or when more
    local processes than GPUs share them), with this process on GPU ``LOCAL_RANK`` modulo the GPU count; returns
    the rank (0 without torchrun). Untested on a GPU."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return 0
    import torch
    import torch.distributed as dist

    from lossaug.run.distributed import local_gpu

    cuda = device != "cpu" and torch.cuda.is_available()
    shared_gpu = False
    if cuda:
        torch.cuda.set_device(local_gpu() or 0)
        # NCCL refuses two ranks on one GPU; more local processes than GPUs (e.g. a 2-process check on one card)
        # run over gloo instead, which handles CUDA tensors too.
        shared_gpu = int(os.environ.get("LOCAL_WORLD_SIZE", "1")) > torch.cuda.device_count()
    if not dist.is_initialized():
        dist.init_process_group("nccl" if cuda and not shared_gpu else "gloo")
    return dist.get_rank()


def cmd_train(args: argparse.Namespace) -> int:
    from lossaug.run.train import validate_config

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
    from lossaug.run.train import NonFiniteError, TrainingInterrupted, train

    try:
        result = train(config, reporter=_reporter() if rank == 0 else None, resume=resume, overwrite=overwrite)
    except (NonFiniteError, TrainingInterrupted) as stop:
        return stop_exit_code(stop, f"resume with: lossaug train --resume {config.out}")
    if rank > 0:
        return 0
    print(
        f"test error {result.test_error:.2%}  train error {result.train_error:.2%}  "
        f"{result.seconds:.1f}s training ({result.images_per_second:.0f} img/s)  -> {result.out_dir}"
    )
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from lossaug.demo import DemoConfig, DemoInterrupted, format_table, note, run_demo
    from lossaug.run.train import NonFiniteError

    given = {**vars(args), "num_candidates": args.candidates}  # options left out keep DemoConfig's defaults
    names = [f.name for f in dataclasses.fields(DemoConfig)]
    config = DemoConfig(**{name: given[name] for name in names if given.get(name) is not None})
    try:
        result = run_demo(config, reporter=_reporter())
    except DemoInterrupted as stop:
        print(f"lossaug: {stop}", file=sys.stderr)
        return stop.exit_code
    except NonFiniteError as stop:
        return stop_exit_code(stop, "")
    print(f"\n{format_table(result)}")
    plot = result.plot_path if result.plot_path is not None else "not written (matplotlib is not installed)"
    print(f"\nplot: {plot}\nsummary: {result.summary_path}\n")
    print(note(result))
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from lossaug.compare import (
        ARMS,
        CompareConfig,
        config_from_protocol,
        run_compare,
        summary_markdown,
        validate_compare,
    )
    from lossaug.run.train import NonFiniteError, TrainingInterrupted

    if args.protocol:
        # A pre-registered protocol is run as committed: any other option would silently change it. --seeds may
        # pick a share of its seeds, so that several processes can run one protocol side by side.
        own = ("arms", "settings", "config", "preset", "branch_at", "budgets", "cost_ratio", "margin")
        options = {k: option_flag(k) for k in (*own, "allow_mixed_commits", "allow_out_of_range")}
        options.update({f.name: f.metadata.get("option", option_flag(f.name)) for f in dataclasses.fields(TrainConfig)})
        typed = [option for name, option in options.items() if getattr(args, name, None) is not None]
        if typed:
            raise UsageError(
                f"--protocol {args.protocol} takes no other options, got {', '.join(typed)}; "
                "edit (and commit) the protocol file instead"
            )
        path = Path(args.protocol)
        table, base = load_protocol_file(path)
        config = config_from_protocol(table, base)
        if args.seeds:
            others = sorted(set(args.seeds) - set(config.seeds))
            if others:
                raise UsageError(
                    f"--seeds {','.join(map(str, others))} not in the seeds of {path} "
                    f"({','.join(map(str, config.seeds))})"
                )
            config = dataclasses.replace(config, seeds=tuple(args.seeds))
        validate_compare(config)  # everything checked before anything is written
        _record_protocol(path, Path(config.out))
    else:
        if not getattr(args, "out", None):
            raise UsageError("lossaug compare needs --out DIR (re-running with the same DIR skips finished runs)")
        _refuse_per_run(args)
        margin = 0.5 if args.margin is None else args.margin
        config = CompareConfig(
            base=config_from_args(args),
            out=args.out,
            arms=args.arms or ARMS,
            settings=args.settings or ("A",),
            seeds=args.seeds or (0, 1, 2),
            branch_at=args.branch_at or 0.0,
            budgets=args.budgets or (),
            cost_ratio=args.cost_ratio,
            margin=margin / 100,
            allow_mixed_commits=bool(args.allow_mixed_commits),
            allow_out_of_range=bool(args.allow_out_of_range),
        )
    try:
        summary = run_compare(config, reporter=_reporter())
    except (NonFiniteError, TrainingInterrupted) as stop:
        return stop_exit_code(stop, "run the same compare command again to continue where it stopped")
    print(summary_markdown(summary))
    frontier = ", frontier.png" if config.budgets else ""
    print(f"summary: {Path(config.out) / 'summary.md'}, summary.json, forest.png{frontier}")
    return 0


def _refuse_per_run(args: argparse.Namespace) -> None:
    """Refuse a typed option of a field compare sets per run, even at its default: every run would overwrite it."""
    from lossaug.compare import PER_RUN

    for name, instead in PER_RUN.items():
        if getattr(args, name, None) is not None:
            flag = option_flag(name)
            raise UsageError(f"{flag} {getattr(args, name)}: compare sets {name} per run; use {instead}")


def _record_protocol(path: Path, out: Path) -> None:
    """Copy the protocol file to ``out/protocol.toml``: the results carry what they ran. A different protocol
    recorded there beside runs or a summary produced them, and is never replaced."""
    from lossaug.run.metadata import write_text

    recorded, text = out / "protocol.toml", path.read_text()
    if recorded.is_file() and recorded.read_text() != text:
        if (out / "summary.json").exists() or any(out.glob("setting-*/*/seed-*/config.json")):
            raise UsageError(
                f"{recorded} records another protocol, which produced the runs in {out}, and {path} "
                "differs from it: give the new protocol another out"
            )
    elif recorded.is_file():
        return
    out.mkdir(parents=True, exist_ok=True)
    write_text(text, recorded)


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
        from lossaug.run.metadata import write_json

        out.parent.mkdir(parents=True, exist_ok=True)
        write_json(result.to_json(), out)  # a failed write names the file
        print(f"wrote {out}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from lossaug.plots import figure_path, plot_report, read_run

    # Beside the runs unless told otherwise: one run's folder, or the folder that holds them all.
    beside = Path(os.path.commonpath([Path(d).absolute() for d in args.run_dirs]))
    out = figure_path(Path(args.out), "report.png") if args.out else beside / "report.png"
    runs, labels = {}, {}
    for directory in args.run_dirs:
        label, records = read_run(Path(directory))
        label = label if label not in runs else f"{label} [{directory}]"
        runs[label], labels[label] = records, Path(directory)
    path = plot_report(runs, out, title=args.title)
    print(f"wrote {path}")
    if args.per_class:
        print(_per_class_table(labels))
    return 0


def _per_class_errors(final: Path) -> dict[str, float | None]:
    """final.json's ``per_class_test_error`` (class name to an error in [0, 1], or None for a class without test
    examples), checked; empty when the file or the key is absent (an unfinished run, or one before they were)."""
    from lossaug.run.runfiles import read_json

    if not final.exists():
        return {}
    if not final.is_file():  # a FIFO would block for ever
        raise InputError(f"{final} is not a regular file")
    table = read_json(final).get("per_class_test_error") or {}
    if not isinstance(table, dict):
        raise InputError(f"{final}: per_class_test_error is a {type(table).__name__}, not an object of classes")
    for name, error in table.items():
        if error is not None and not _is_error(error):
            raise InputError(f"{final}: per_class_test_error of {name!r} is {error!r}, not an error in [0, 1]")
    return table


def _is_error(value: Any) -> bool:
    """Whether ``value`` is a number in [0, 1] (not a bool)."""
    import math

    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and 0 <= value <= 1


def _per_class_table(runs: dict[str, Path]) -> str:
    """Each run's per-class test errors (final.json's ``per_class_test_error``) as a text table: one row per class,
    one column per run; ``-`` where a run has no such class or did not record them (runs before this existed)."""
    errors = {label: _per_class_errors(directory / "final.json") for label, directory in runs.items()}
    classes = list(dict.fromkeys(name for table in errors.values() for name in table))
    if not classes:
        return "no per-class test errors recorded (final.json of runs made before they were, or unfinished runs)"
    width = max(len(name) for name in [*classes, "class"])
    lines = [f"{'class':<{width}}  " + "  ".join(f"{label:>12}" for label in errors)]
    for name in classes:
        cells = [errors[label].get(name) for label in errors]
        lines.append(f"{name:<{width}}  " + "  ".join(f"{'-' if e is None else f'{e:.2%}':>12}" for e in cells))
    return "\n".join(lines)


def cmd_show(args: argparse.Namespace) -> int:
    from lossaug.plots import figure_path
    from lossaug.show import load_run, show_candidates

    given = Path(args.checkpoint)
    run_dir = given if given.is_dir() else given.parent
    out = figure_path(Path(args.out), "candidates.png") if args.out else run_dir / "candidates.png"
    cache_dir = Path(args.cache_dir) if args.cache_dir else default_cache_dir()
    run = load_run(Path(args.checkpoint), data=args.data, cache_dir=cache_dir, trust_code=args.trust_code)
    path = show_candidates(run, out, num_images=args.images, num_candidates=args.candidates, seed=args.seed)
    print(f"wrote {path}")
    return 0
