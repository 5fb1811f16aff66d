"""What a run reports: the per-epoch metrics record (from ``EpochStats`` totals), and the callbacks that hand
it on: metrics.jsonl, TensorBoard, console progress, and a user's per-step hook. Each callback implements any
of ``on_epoch_start``, ``on_step``, ``on_epoch`` and ``on_end``; the loop calls them in order."""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lossaug.progress import Reporter, format_eta
from lossaug.run.config import RunResult
from lossaug.run.metadata import write_json
from lossaug.selection import Selection


def epoch_record(
    epoch: int,
    totals: dict[str, float],
    *,
    test: tuple[float, float] | None,
    lr: float,
    seconds: float,
    elapsed: float,
    images_per_epoch: int,
    num_candidates: int,
    nonfinite_steps: int,
) -> dict[str, Any]:
    """One line of metrics.jsonl. ``test`` is ``(error, loss)``, None when the epoch was not evaluated (NaN)."""
    count, selected = totals["images"], totals["selected"]
    test_error, test_loss = test if test is not None else (math.nan, math.nan)
    return {
        "epoch": epoch,
        "train_loss": totals["loss"] / count if count else math.nan,
        "train_error": totals["wrong"] / count if count else math.nan,
        "test_error": test_error,
        "test_loss": test_loss,
        "lr": lr,
        "seconds": seconds,
        "elapsed_seconds": elapsed,
        "images_per_second": images_per_epoch / seconds,
        "selected_fraction": selected / count if count else math.nan,
        # entropy and chosen/mean over the images that went through selection only
        "entropy": totals["entropy"] / selected if selected else 0.0,
        "uniform_entropy": math.log(num_candidates),
        "chosen_score_ratio": totals["chosen_score"] / totals["mean_score"] if totals["mean_score"] > 0 else None,
        "fallback_rows": int(totals["fallback_rows"]),
        "nonfinite_steps": nonfinite_steps,
        # stale-loss gating: mean last training loss of the images scored and not scored (seen images only)
        "stale_loss_scored": _mean(totals["stale_scored"], totals["stale_scored_count"]),
        "stale_loss_unscored": _mean(totals["stale_unscored"], totals["stale_unscored_count"]),
    }


def _mean(total: float, count: float) -> float | None:
    return total / count if count else None


class Callback:
    """Things that happen around the step. Every hook is optional."""

    def on_epoch_start(self, epoch: int, done_steps: int) -> None: ...
    def on_step(self, global_step: int, selection: Selection) -> None: ...
    def on_epoch(self, record: dict[str, Any]) -> None: ...
    def on_end(self) -> None: ...


def _percent(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.2%}"


def _validation(record: dict[str, Any]) -> str:
    """``val err 12.50% | `` when the epoch was validated (--val-fraction), else nothing."""
    return f"val err {record['val_error']:.2%} | " if "val_error" in record else ""


class Progress(Callback):
    """Console progress through a ``Reporter``: a bar per epoch (with the whole run's ETA, from the steps this
    process has timed) and one summary line after it."""

    def __init__(self, reporter: Reporter, epochs: int, steps_per_epoch: int, batch_size: int):
        self.reporter, self.epochs, self.steps, self.batch = reporter, epochs, steps_per_epoch, batch_size
        self.timed_steps, self.timed_seconds, self.clock = 0, 0.0, time.perf_counter()

    def on_epoch_start(self, epoch: int, done_steps: int) -> None:
        self.reporter.start(f"epoch {epoch + 1}/{self.epochs}", self.steps * self.batch)
        self.reporter.advance(done_steps * self.batch)
        self.clock = time.perf_counter()  # evaluation and checkpoints between epochs are not step time

    def on_step(self, global_step: int, selection: Selection) -> None:
        now = time.perf_counter()
        self.timed_steps, self.timed_seconds, self.clock = (
            self.timed_steps + 1,
            self.timed_seconds + now - self.clock,
            now,
        )
        remaining = self.epochs * self.steps - global_step
        run_eta = remaining * self.timed_seconds / self.timed_steps
        self.reporter.advance(self.batch, f"run ETA {format_eta(run_eta)}")

    def on_epoch(self, record: dict[str, Any]) -> None:
        self.reporter.finish(
            f"epoch {record['epoch']}/{self.epochs} train loss {record['train_loss']:.4f} "
            f"err {record['train_error']:.2%} | {_validation(record)}test err {_percent(record['test_error'])} | "
            f"{record['seconds']:.1f}s {record['images_per_second']:.0f} img/s | entropy {record['entropy']:.3f}"
        )


class MetricsFile(Callback):
    """``metrics.jsonl``: one JSON line per epoch. At start it is rewritten from the checkpoint's records (the
    checkpoint is the truth: a line written after it, before a crash, is dropped)."""

    def __init__(self, path: Path, records: list[dict]):
        self.path = path
        self._write("w", "".join(json.dumps(m) + "\n" for m in records))

    def on_epoch(self, record: dict[str, Any]) -> None:
        self._write("a", json.dumps(record) + "\n")

    def _write(self, mode: str, text: str) -> None:
        try:
            with open(self.path, mode) as handle:
                handle.write(text)
        except OSError as error:  # a write's error (a full disk) carries no file name: give it one
            raise OSError(error.errno, f"could not write {self.path}: {error.strerror or error}") from error


class TensorBoardLog(Callback):
    """Per-epoch scalars in ``log_dir``; ``purge_step`` drops events a crashed run wrote after its checkpoint."""

    def __init__(self, log_dir: Path, purge_step: int):
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(log_dir), purge_step=purge_step)

    def on_epoch(self, record: dict[str, Any]) -> None:
        for key, value in record.items():
            if key != "epoch" and isinstance(value, (int, float)) and not math.isnan(value):
                self.writer.add_scalar(key, value, record["epoch"])
        self.writer.flush()

    def on_end(self) -> None:
        self.writer.close()


class StepHook(Callback):
    """A user's ``on_step(global_step, selection)``, called after every step."""

    def __init__(self, hook: Callable[[int, Selection], None]):
        self.hook = hook

    def on_step(self, global_step: int, selection: Selection) -> None:
        self.hook(global_step, selection)


def write_final(out_dir: Path, result: RunResult, extra: dict[str, Any]) -> None:
    """``final.json`` (the result's numbers, its epochs and ``extra``) and ``curves.png`` in ``out_dir``. Without
    matplotlib (a bare GPU box) the plot is skipped with a warning: the numbers are written already."""
    numbers = {
        f.name: getattr(result, f.name)
        for f in dataclasses.fields(result)
        if f.name not in ("model", "metrics", "config")
    }
    write_json({**numbers, "epochs": len(result.metrics), "out_dir": str(out_dir), **extra}, out_dir / "final.json")
    from lossaug.plots import plot_curves

    config = result.config
    plot_curves(
        {config.method: list(result.metrics)}, out_dir / "curves.png", title=f"{config.model} on {config.dataset}"
    )
