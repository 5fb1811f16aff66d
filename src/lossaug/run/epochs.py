"""A run's public epoch API: ``open_run(config) -> Run``, then its epochs one call at a time.

``train`` is a plain loop over it::

    with open_run(config) as run, stop_requests(run.signal):
        for _epoch in range(run.epochs_left):
            stop = run.epoch()  # start_epoch(), every step of steps(), end_epoch()
            if stop is not Stop.NONE:
                break  # (a signal: raise run.interrupted())
        result = run.finish()

A caller that drives several runs (``lossaug demo`` alternates two in one thread) calls the same methods: one
epoch of a run, then one of another, each run's files exactly as ``train`` writes them.

Per step the run reads as the method (``steps``): choose whether this step selects (``select_from`` /
``select_every``), make M candidates and select one per image (``LossAwareAugment``), update the model (a guarded
step), step the schedule, update the proxy if any, and hand the step to the callbacks. The parts it drives are
built, checkpointed and restored by ``parts.RunParts``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from lossaug.data import epoch_order
from lossaug.progress import Reporter
from lossaug.run.config import RunResult, TrainConfig, validate_config
from lossaug.run.distributed import World
from lossaug.run.interrupts import STOP_SYNC_STEPS, NonFiniteError, Stop, StopRequest, TrainingInterrupted
from lossaug.run.metadata import write_json
from lossaug.run.method import selects_at
from lossaug.run.parts import RunParts
from lossaug.run.pipeline import confusion_matrix, epoch_batches, evaluate, per_class_errors
from lossaug.run.rundir import RunLock, check_run_dir
from lossaug.run.state import EpochStats, remember_losses
from lossaug.run.step import StepOutput
from lossaug.run.telemetry import epoch_record, write_final
from lossaug.selection import Selection

__all__ = ["Run", "Stop", "open_run"]


def open_run(
    config: TrainConfig,
    *,
    reporter: Reporter | None = None,
    on_step: Callable[[int, Selection], None] | None = None,
    resume: bool = False,
    overwrite: bool = False,
) -> Run:
    """Set up the run of ``config`` and return it, ready for its first (or, resuming, next) epoch.

    Arguments as ``train``'s. The run directory is locked from here until ``run.close()`` (or the end of a
    ``with`` block); one holding another run is refused unless ``resume`` or ``overwrite`` (which removes only
    the run's own files) is given. Signals are the caller's: ``train`` wraps the loop in
    ``stop_requests(run.signal)`` so that SIGTERM/SIGINT stop the run after its current step.
    """
    validate_config(config)
    leader = World.current().leader
    with contextlib.ExitStack() as held:
        replaced: list[Path] = []  # an overwritten run's files: removed once this run is set up, just before it writes
        if config.out and leader:
            held.enter_context(RunLock(Path(config.out)))
            reads = {"--init": config.init, "branch_from": config.branch_from}
            tensorboard = config.tensorboard == "on"
            replaced = check_run_dir(
                Path(config.out), resume=resume, overwrite=overwrite, reads=reads, tensorboard=tensorboard
            )
        run = Run(config, reporter, on_step, resume, replaced, held.pop_all())
    return run


class Run(RunParts):
    """One run, driven an epoch at a time: ``epoch()`` (or ``start_epoch()``, the iteration of ``steps()`` and
    ``end_epoch()``) while ``epochs_left``, then ``finish()`` for the result; ``close()`` (or leaving a ``with``
    block) ends it, with or without a result. Made by ``open_run``. Owns the non-finite policy, the stops
    (``signal``, ``stop_step``) and the checkpoints they call for."""

    def __init__(
        self,
        config: TrainConfig,
        reporter: Reporter | None,
        on_step: Callable[[int, Selection], None] | None,
        resume: bool,
        replaced: Sequence[Path],
        held: contextlib.ExitStack,
    ):
        with held:  # a failed set-up lets go of the run directory at once
            super().__init__(config, reporter, on_step, resume, replaced)
            self._held = held.pop_all()  # the run directory's lock, released by close()
        self.signal, self.clock = StopRequest(), time.perf_counter()  # SIGTERM/SIGINT's request; the epoch's clock
        self.last_checkpoint: Path | None = None
        self.before: dict[str, Tensor] | None = None  # the random streams before a step (on_nonfinite "raise")
        self.model.model.train()

    def __enter__(self) -> Run:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def epochs_left(self) -> int:
        """Epochs still to train (the current one counts when resuming within it)."""
        return self.config.epochs - self.state.epoch

    # ------------------------------------------------------------ the epoch API

    def epoch(self) -> Stop:
        """One epoch (or the rest of one): ``start_epoch``, every step, ``end_epoch``. Returns why the run stops
        after it: ``Stop.NONE`` (go on while ``epochs_left``), a trunk's end, early stopping, or a signal."""
        self.start_epoch()
        for stop in self.steps():
            if stop is not Stop.NONE:
                return stop
        return self.end_epoch()

    def start_epoch(self) -> None:
        """A new epoch's data order and statistics (unless resuming within the epoch), callbacks, the clock."""
        state = self.state
        if state.permutation is None:
            state.permutation = epoch_order(self.data.train_labels, self.config.balance, self.streams["order"])
            self.stats, state.epoch_seconds = EpochStats.zeros(self.device), 0.0
        for callback in self.callbacks:
            callback.on_epoch_start(state.epoch, state.step)
        self.clock = time.perf_counter()

    def steps(self) -> Iterator[Stop]:
        """Train the epoch's remaining steps, one per iteration, each yielding why the run stops after it.
        ``Stop.NONE`` goes on; the iteration ends after any other (a signal or the trunk's end: checkpointed)
        and after the epoch's last step, which ``end_epoch`` then records."""
        config = self.config
        for images, labels, indices in self._batches():
            selecting = selects_at(config, self.state.global_step, self.schedule.total_steps)
            selection = self._select(images, labels, indices, selecting)
            out = self.model.step(selection, labels, self.device, config.label_smoothing)
            self._check_finite(out)
            self.model.scheduler.step()
            if self.proxy is not None:  # the proxy learns from the same chosen inputs
                self.proxy.step(selection, labels, self.device, config.label_smoothing)
                self.proxy.scheduler.step()
            stop = self._after_step(out, labels, indices, selection, selecting)
            yield stop
            if stop is not Stop.NONE:
                return

    def end_epoch(self) -> Stop:
        """Evaluate when due, record the epoch, hand the record to the callbacks, checkpoint. Returns why the run
        stops after this epoch (``Stop.NONE``: it goes on while ``epochs_left``)."""
        state, config = self.state, self.config
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        self._lap()
        state.run_seconds += state.epoch_seconds
        totals = self.stats.totals(self.world)
        val = self.validation.measure(self.model.model, state.metrics)  # the test set is never used to choose
        evaluated = val.stop or state.epoch + 1 == config.epochs or (state.epoch + 1) % config.eval_every == 0
        if evaluated:
            data = self.data
            state.test_error, state.test_loss = evaluate(
                self.model.model, data.test_images, data.test_labels, self.device
            )
        record = epoch_record(
            state.epoch + 1,
            totals,
            test=(state.test_error, state.test_loss) if evaluated else None,
            lr=self.model.optimizer.param_groups[0]["lr"],
            seconds=state.epoch_seconds,
            elapsed=state.run_seconds,
            images_per_epoch=self.steps_per_epoch * config.images_per_step(),
            num_candidates=config.candidates_per_image(),
            nonfinite_steps=self.stats.nonfinite_steps,
        )
        record.update(val.record)  # validation error and loss when the run holds a split
        state.metrics.append(record)
        state.epoch, state.step, state.permutation = state.epoch + 1, 0, None
        for callback in self.callbacks:
            callback.on_epoch(record)
        self.last_checkpoint = self.save(best=self.validation.keeps(state.metrics))
        self.signal.signum = self.world.agree_on_stop(self.signal.signum, self.device)
        if state.global_step == self.stop_step:
            return Stop.TRUNK_END
        if val.stop:  # the run is over: a signal now changes nothing
            return Stop.EARLY
        if self.signal.signum and state.epoch < config.epochs:
            return Stop.SIGNAL
        return Stop.NONE

    def finish(self) -> RunResult:
        """End the run with its result: the callbacks are closed, then final.json and curves.png are written (a
        trunk writes trunk.json instead). ``close`` still lets go of the run directory."""
        self._close_callbacks()
        return self._result()

    def close(self) -> None:
        """End the run, with or without ``finish``: the callbacks are closed (once) and the run directory's lock
        released. An unfinished run keeps its last checkpoint, from which ``resume`` continues it."""
        self._close_callbacks()
        self._held.close()

    def interrupted(self) -> TrainingInterrupted:
        """The exception that ends a run stopped by a signal, naming its checkpoint."""
        assert self.signal.signum is not None, "a run stops on a signal only once one arrived"
        return TrainingInterrupted(self.signal.signum, self.last_checkpoint, self.state.global_step)

    # ------------------------------------------------------------ the step's parts

    def _batches(self) -> Iterator[tuple[Tensor, Tensor, Tensor]]:
        """``(images, labels, indices)`` of the epoch's remaining steps; ``indices`` are dataset indices."""
        state, config = self.state, self.config
        assert state.permutation is not None, "start_epoch draws the epoch's order"
        return epoch_batches(
            self.data, state.permutation, state.step, config.images_per_step(), self.world, self.device
        )

    def _select(self, images: Tensor, labels: Tensor, indices: Tensor, selecting: bool) -> Selection:
        """The method on one batch: M candidates per image, one chosen (one random candidate when not
        ``selecting``), from the run's named streams; stale-loss gating reads the images' last losses."""
        if self.config.on_nonfinite == "raise" and self.out_dir is not None:
            # The random streams before the step: a non-finite raise saves the state as it was before it.
            self.before = self.streams.state()
        return self.method(
            self.scorer,
            images,
            labels,
            num_candidates=None if selecting else 1,
            generator=self.streams["augment"],
            extra_generator=self.streams["augment-extra"],
            select_generator=self.streams["select"],
            stale_losses=self.stale_losses[indices],
            order=indices,
        )

    def _check_finite(self, out: StepOutput) -> None:
        """The non-finite policy. The step was already undone; ``raise`` saves the state before it and stops,
        ``skip`` goes on, but not for more than ``max_nonfinite`` steps in a row."""
        state, config = self.state, self.config
        if out.finite:
            state.nonfinite_in_a_row = 0
            return
        where = f"step {state.global_step + 1} (epoch {state.epoch + 1}, step {state.step + 1})"
        kind = "loss" if not torch.isfinite(out.loss) else "gradient or update"
        if config.on_nonfinite == "raise":
            self._lap()
            path = self.save(self.before)
            saved = f"; last good state saved to {path}" if path else ""
            raise NonFiniteError(f"non-finite {kind} at {where}{saved}; lower --lr or use --on-nonfinite skip")
        state.nonfinite_in_a_row += 1
        if state.nonfinite_in_a_row >= config.max_nonfinite:
            raise NonFiniteError(
                f"{state.nonfinite_in_a_row} non-finite steps in a row up to {where} (limit --max-nonfinite "
                f"{config.max_nonfinite}): the run is not learning; lower --lr and resume from the last checkpoint"
            )

    def _after_step(
        self, out: StepOutput, labels: Tensor, indices: Tensor, selection: Selection, selecting: bool
    ) -> Stop:
        """Count the step, remember the images' losses, hand the step to the callbacks, and checkpoint if a
        signal, the period or the trunk's end asks for it (epoch ends checkpoint in ``end_epoch``)."""
        state = self.state
        self.stats.add(out, labels, selection, selecting, self.stale_losses[indices])
        if out.finite:
            remember_losses(self.stale_losses, indices, out, selection.input_targets(labels), self.world)
        state.step += 1
        state.global_step += 1
        for callback in self.callbacks:
            callback.on_step(state.global_step, selection)
        periodic = self.saver.due(state.global_step)
        trunk_end = state.global_step == self.stop_step
        signum = self.signal.signum
        if self.world.distributed:
            # Ranks agree on a signal (an all-reduce and a host sync) only every STOP_SYNC_STEPS steps, at the
            # checkpoints and at epoch ends (end_epoch): every rank then stops after the same step.
            due = periodic or trunk_end or state.global_step % STOP_SYNC_STEPS == 0
            if due:
                self.signal.signum = self.world.agree_on_stop(signum, self.device)
            signum = self.signal.signum if due else None  # a signal seen here alone waits for the next agreement
        if not (signum or periodic or trunk_end) or state.step >= self.steps_per_epoch:
            return Stop.NONE  # the epoch's end checkpoints
        self._lap()
        self.last_checkpoint = self.save()
        return Stop.TRUNK_END if trunk_end else Stop.SIGNAL if signum else Stop.NONE

    def _result(self) -> RunResult:
        """The run's result; writes final.json and curves.png (a trunk writes trunk.json instead)."""
        state, config, metadata = self.state, self.config, self.metadata
        final = state.metrics[-1] if state.metrics else {"train_error": math.nan, "train_loss": math.nan}
        result = RunResult(
            config=config,
            test_error=final.get("test_error", state.test_error),
            test_loss=final.get("test_loss", state.test_loss),
            train_error=final["train_error"],
            train_loss=final["train_loss"],
            seconds=state.run_seconds,
            images_per_second=sum(m["images_per_second"] * m["seconds"] for m in state.metrics) / state.run_seconds
            if state.run_seconds
            else math.nan,
            metrics=tuple(state.metrics),
            device=metadata["device"],
            out_dir=self.out_dir,
            model=self.model.model,
        )
        if self.world.distributed:  # DDP keeps replicas identical; check it rather than assume it
            metadata["rank_parameter_checksums"] = self.world.parameter_checksums(self.model.model)
        final_due = self.out_dir is not None and self.stop_step is None
        data = self.data  # every rank counts its share of the test set, so that the ranks finish together
        counts = (
            confusion_matrix(self.model.model, data.test_images, data.test_labels, data.num_classes, self.device)
            if final_due
            else None
        )
        if not self.writes or self.out_dir is None:  # writes: the leader, with a run directory
            return result
        if self.stop_step is not None:
            write_json(
                {
                    "global_step": state.global_step,
                    "stop_step": self.stop_step,
                    "schedule": dataclasses.asdict(self.schedule),
                },
                self.out_dir / "trunk.json",
            )
            return result
        assert counts is not None, "final_due: counted above"
        extra: dict[str, Any] = {k: metadata[k] for k in ("world_size", "rank_parameter_checksums") if k in metadata}
        extra.update(self.validation.summary(state.metrics))  # why it stopped, its best epoch
        extra.update(test_examples=int(counts.sum()), num_classes=data.num_classes)  # granularity and chance
        write_final(self.out_dir, result, {**extra, "per_class_test_error": per_class_errors(counts, data.classes)})
        return result

    def _lap(self) -> None:
        """Add the time since the last lap to the epoch's training time."""
        now = time.perf_counter()
        self.state.epoch_seconds += now - self.clock
        self.clock = now

    def _close_callbacks(self) -> None:
        """``on_end`` of every callback, once."""
        callbacks, self.callbacks = self.callbacks, []
        for callback in callbacks:
            callback.on_end()
