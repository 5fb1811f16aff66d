"""The training application: ``train(TrainConfig) -> RunResult``.

The loop reads as the method. Per step: choose whether this step selects (``select_from`` / ``select_every``),
make M candidates and select one per image (``LossAwareAugment``), update the model (a guarded step), step the
schedule, update the proxy if any, and hand the step to the callbacks. Everything else is a named part beside
it: ``config`` (what defines a run), ``method`` (config -> augmentation, method object, schedule, SGD),
``pipeline`` (device, data, batches, evaluation), ``step`` (the guarded update), ``state`` (position, random
streams, epoch statistics, checkpoint payload), ``distributed``, ``telemetry`` (metrics record and callbacks),
``metadata`` (config.json). ``_Run`` below wires them for one run and owns checkpoints and signals.

When ``out`` is set the run directory gets ``config.json``, ``metrics.jsonl`` (one line per epoch),
``final.json``, ``checkpoint.pt`` and ``curves.png``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, cast

import torch
from torch import Tensor, nn

from lossaug.checkpoint import NEWEST, CheckpointSaver, RunCheckpoint, nonfinite_not_saved
from lossaug.config import DEVICES, METHODS, PRESETS, SETTINGS, RunResult, TrainConfig, validate_config
from lossaug.data import data_fingerprint, epoch_order
from lossaug.distributed import World
from lossaug.errors import InputError
from lossaug.finetune import apply_init, read_init
from lossaug.guards import EtaNote, run_warnings
from lossaug.interrupts import STOP_SYNC_STEPS, NonFiniteError, Stop, StopRequest, TrainingInterrupted, stop_requests
from lossaug.kinds import kind_named
from lossaug.memory import check_run_memory
from lossaug.metadata import device_name, git_commit, run_metadata, write_json, write_run_config
from lossaug.method import (
    build_augment,
    build_sgd,
    cosine_lr,
    method_for,
    reapply_hyperparameters,
    scoring_chunk,
    selects_at,
)
from lossaug.models import Normalized, build_classifier, check_classifier_output, check_state_fits
from lossaug.origin import check_restorable, config_differences, run_origin, run_schedule, step_ratio
from lossaug.pipeline import (
    balanced_subset,
    channel_stats,
    confusion_matrix,
    epoch_batches,
    evaluate,
    make_generator,
    per_class_errors,
    prepare_data,
    resolve_device,
    use_device,
)
from lossaug.progress import Reporter
from lossaug.rundir import RunLock, check_run_dir, remove_run_files
from lossaug.seeds import stream_seed
from lossaug.selection import Selection
from lossaug.state import EpochStats, Learner, RunState, Streams, remember_losses
from lossaug.step import StepOutput, state_is_finite, train_step, training_loss
from lossaug.telemetry import Callback, MetricsFile, Progress, StepHook, TensorBoardLog, epoch_record, write_final
from lossaug.validation import Validation

__all__ = [
    "DEVICES", "METHODS", "PRESETS", "SETTINGS", "NonFiniteError", "RunResult", "TrainConfig", "TrainingInterrupted",
    "balanced_subset", "build_augment", "channel_stats", "config_differences", "cosine_lr", "device_name",
    "evaluate", "git_commit", "make_generator", "reapply_hyperparameters", "resolve_device", "selects_at",
    "stream_seed", "train", "train_step", "training_loss", "validate_config",
]  # fmt: skip


def train(
    config: TrainConfig,
    *,
    reporter: Reporter | None = None,
    on_step: Callable[[int, Selection], None] | None = None,
    resume: bool = False,
    overwrite: bool = False,
) -> RunResult:
    """Train ``config.model`` with ``config.method`` and return the final errors, timings and per-epoch metrics.

    Writes files only when ``config.out`` is set. ``reporter`` receives progress (see ``progress.py``);
    ``on_step(global_step, selection)`` is called after every step. ``resume=True`` continues from the newest
    valid checkpoint in ``config.out``: on the CPU the result equals the uninterrupted run's bit for bit.
    SIGTERM/SIGINT stop after the current step with a checkpoint and raise ``TrainingInterrupted``.
    The run directory is locked for the run's life; one holding another run is refused unless ``resume`` or
    ``overwrite`` (which removes only the run's own files) is given.
    """
    validate_config(config)
    lock = RunLock(Path(config.out)) if config.out and World.current().leader else contextlib.nullcontext()
    with lock:
        replaced = []  # an overwritten run's files: removed once this run is set up, just before it writes
        if config.out and World.current().leader:
            reads = {"--init": config.init, "branch_from": config.branch_from}
            replaced = check_run_dir(Path(config.out), resume=resume, overwrite=overwrite, reads=reads,
                                     tensorboard=config.tensorboard == "on")  # fmt: skip
        return _train(config, reporter, on_step, resume, replaced)


def _train(config: TrainConfig, reporter: Reporter | None, on_step, resume: bool, replaced: list[Path]) -> RunResult:
    """The loop: the method in a few lines, the machinery in ``_Run``."""
    run = _Run(config, reporter, on_step, resume, replaced)
    with run.session():
        for _epoch in range(run.state.epoch, config.epochs):
            run.start_epoch()
            for images, labels, indices in run.batches():
                selecting = selects_at(config, run.state.global_step, run.schedule.total_steps)
                selection = run.select(images, labels, indices, selecting)
                out = run.model.step(selection, labels, run.device, config.label_smoothing)
                run.check_finite(out)
                run.model.scheduler.step()
                if run.proxy is not None:  # the proxy learns from the same chosen inputs
                    run.proxy.step(selection, labels, run.device, config.label_smoothing)
                    run.proxy.scheduler.step()
                stop = run.after_step(out, labels, indices, selection, selecting)
                if stop is not Stop.NONE:
                    break
            else:
                stop = run.end_epoch()
            if stop is Stop.SIGNAL:
                raise run.interrupted()
            if stop is not Stop.NONE:  # a trunk's end, or early stopping
                break
    return run.result()


class _Run:
    """One run's parts, wired: built from the config (and a checkpoint when resuming or branching), then driven
    by ``train``'s loop. Owns the checkpoints, the non-finite policy, signals and the run directory's files."""

    def __init__(self, config: TrainConfig, reporter: Reporter | None, on_step, resume: bool,
                 replaced: Sequence[Path] = ()):  # fmt: skip
        self.config, self.device, self.world = config, resolve_device(config.device), World.current()
        if config.images_per_step() % self.world.size:
            raise InputError(f"images per step ({config.images_per_step()}, batch_size {config.batch_size}) must be "
                             f"a multiple of the {self.world.size} processes")  # fmt: skip
        use_device(self.device)  # current GPU; cuDNN benchmark unless deterministic (as bench times it)
        self.reporter = reporter if self.world.leader else None  # rank 0 reports and writes for everyone
        self.out_dir = Path(config.out) if config.out else None
        self.writes = self.out_dir is not None and self.world.leader
        self.saver = CheckpointSaver(self.out_dir, config.checkpoint_every)
        origin, checkpoint = run_origin(config, self.out_dir, resume)
        # --init's file is read before the data (a bad path fails at once); resumes and branches never read it.
        init_tensors = read_init(config.init) if config.init is not None and origin is None else None
        self.data = prepare_data(config, self.device, self.reporter.log if self.reporter else None)
        data = self.data
        self.fingerprint = data_fingerprint(data.train_images, data.train_labels, data.num_classes, data.notes)
        self.image_side = kind_named(data.kind).image_side(data.train_images)
        rate = data.sample_rate  # audio: the clips' rate, which freqmask is built for; None for images
        self.method = method_for(config, data.mean, self.device, audio_rate=rate, image_side=self.image_side,
                                 num_classes=data.num_classes)  # fmt: skip
        self.steps_per_epoch = len(self.data.train_labels) // config.images_per_step()
        self.schedule = run_schedule(config, self.steps_per_epoch, origin, checkpoint)
        check_run_memory(config, self.data, self.device, self.world.size, self.method.augment)
        net = self._network("init", config.model, config.width)
        self.init_report = self._load_init(net, init_tensors, origin, checkpoint)
        self.model = self._learner(net, tuple(self.init_report["loaded"]) if self.init_report else ())
        # The proxy (if any) scores the candidates and learns from the same chosen batches with its own optimizer;
        # it never sees the main model's loss. torch.compile wraps whichever network scores.
        proxy = self._network("proxy-init", config.proxy_model, config.proxy_width) if config.proxy_model else None
        self.proxy = self._learner(proxy) if proxy is not None else None
        scorer = (self.proxy or self.model).model
        # torch.compile of a Module is an OptimizedModule, itself a Module; its stubs say only a callable.
        self.scorer = cast(nn.Module, torch.compile(scorer)) if config.compile_scoring == "on" else scorer
        self.streams = Streams(config.seed, self.device, self.world.rank, self.world.size)
        self.state, self.stats = RunState(), EpochStats.zeros(self.device)
        self.before: dict[str, Tensor] | None = None  # the random streams before a step (on_nonfinite "raise")
        # Each training image's last training loss (+inf until seen): stale-loss gating picks the rows to score
        # from it. Kept by every run, so that a gated branch starts from its trunk's table.
        self.stale_losses = torch.full((len(data.train_labels),), math.inf, device=self.device)
        if checkpoint is not None:
            assert origin is not None, "run_origin gives a checkpoint with its origin"
            self._restore(checkpoint, origin)
        stop_at = config.stop_at
        self.stop_step = math.ceil(stop_at * self.schedule.total_steps) if stop_at is not None else None
        self.signal, self.clock = StopRequest(), time.perf_counter()
        self.last_checkpoint: Path | None = None
        self.validation = Validation.for_run(config, data.val_images, data.val_labels, self.device)
        self.metadata = self._metadata(origin)
        remove_run_files(list(replaced))  # --overwrite: the old run goes only now that this one is set up
        # The run is set up: now the advice for small data and runs that are not what they look like, if any.
        for message in run_warnings(config, data.train_labels, data.classes, data.kind, self.world.size):
            if self.world.leader:
                warnings.warn(message, stacklevel=3)
        self.callbacks = self._callbacks(on_step)
        if self.reporter is not None:
            resumed = f", {origin} at epoch {self.state.epoch + 1} step {self.state.step}" if origin else ""
            noun = kind_named(self.data.kind).noun
            self.reporter.log(
                f"{config.method} (M={config.candidates_per_image()}, T={config.resolved_temperature()}) "
                f"{config.model} on {config.dataset}: {len(self.data.train_labels)} train / "
                f"{len(self.data.test_labels)} test {noun}, augment {self.metadata['resolved']['augment']!r}, "
                f"{self.metadata['device']}{resumed}"
            )

    # ------------------------------------------------------------ set-up

    def _network(self, stream: str, name: str, width: int | None) -> Normalized:
        """A network behind normalisation, initialised from its own random stream."""
        data = self.data
        net = build_classifier(
            name, data.num_classes, data.in_channels, width, (data.mean, data.std),
            device=self.device, init_seed=stream_seed(self.config.seed, stream), sample_rate=data.sample_rate,
        )  # fmt: skip
        check_classifier_output(net, data.train_images[:2].to(self.device), data.num_classes, name)
        return net

    def _load_init(
        self, net: Normalized, tensors: dict | None, origin: str | None, checkpoint: RunCheckpoint | None
    ) -> dict | None:
        """What ``--init`` loaded into ``net`` (None without ``--init``). A fresh run loads ``tensors`` now; a
        resumed or branched one reads the report back from its checkpoint (its weights come from there)."""
        config = self.config
        if config.init is None:
            return None
        if origin is not None:
            assert checkpoint is not None, "run_origin gives an origin with its checkpoint"
            return checkpoint.init or {"loaded": []}
        assert tensors is not None, "a fresh run with --init read its tensors"
        report = apply_init(net.net, tensors, config.init, config.init_strict)
        if self.reporter is not None:
            self.reporter.log(report.summary())
        return report.to_json()

    def _learner(self, net: nn.Module, loaded: tuple[str, ...] = ()) -> Learner:
        """``net`` with SGD (the tensors ``loaded`` by ``--init`` in their own group) and the run's schedule."""
        schedule = self.schedule
        optimizer, _ = build_sgd(net, self.config, schedule, loaded)
        # A plain function, not the Schedule object: LambdaLR saves a callable object's attributes in its state
        # and would put the saved run's schedule back on load.
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: schedule(step))
        return Learner(net.train(), self.world.wrap(net), optimizer, scheduler, self.world)

    def _restore(self, checkpoint: RunCheckpoint, origin: str) -> None:
        """Put a checkpoint's weights, optimizers, schedule position, random streams and position back."""
        where = f"{origin} from {self.config.branch_from if origin == 'branch' else self.out_dir}"
        check_restorable(checkpoint, where, self.config, self.data.num_classes, self.fingerprint, self.world.size)
        check_state_fits(self.model.model, checkpoint.model, f"cannot {where}", self.config.model)
        self.model.load_state_dict(checkpoint.learner(), self.config)
        if self.proxy is not None and checkpoint.proxy is not None:
            assert self.config.proxy_model is not None, "a run has a proxy only with proxy_model"
            check_state_fits(self.proxy.model, checkpoint.proxy["model"], f"cannot {where}", self.config.proxy_model)
            self.proxy.load_state_dict(checkpoint.proxy, self.config)
        own = checkpoint.random[self.world.rank]
        self.streams.restore(own, f"cannot {where}")
        self.state = RunState.from_state(checkpoint.position)
        if origin == "branch":  # a branch with fewer images per step (weighted) counts the trunk's steps in its own
            ratio = step_ratio(self.config, checkpoint)
            self.state.step, self.state.global_step = self.state.step * ratio, self.state.global_step * ratio
        if own.get("epoch_stats") is not None:
            self.stats = EpochStats.from_state(own["epoch_stats"], self.device)
        if checkpoint.stale_losses is not None and checkpoint.stale_losses.shape == self.stale_losses.shape:
            self.stale_losses.copy_(checkpoint.stale_losses)

    def _metadata(self, origin: str | None) -> dict[str, Any]:
        resolved = {"score_chunk": scoring_chunk(self.config, self.device),
                    "num_candidates": self.config.candidates_per_image(), "steps_per_epoch": self.steps_per_epoch,
                    "schedule": dataclasses.asdict(self.schedule), "stop_step": self.stop_step,
                    "augment": kind_named(self.data.kind).default_augment(self.config, self.image_side),
                    "inputs": self.data.input_spec(),  # what the network takes (predict, export)
                    "classes": list(self.data.classes), **self.data.notes,  # split made, files skipped
                    "data_fingerprint": self.fingerprint,  # compare checks it
                    "data_path": str(Path(self.config.data).absolute()) if self.config.data else None}  # fmt: skip
        metadata = {**run_metadata(self.config, self.device, resolved), "world_size": self.world.size}
        if self.init_report is not None:
            metadata["init"] = self.init_report
        if origin == "resume":
            metadata["resumed_from_step"] = self.state.global_step
        if origin == "branch":
            metadata["branched_from"] = {"run_dir": self.config.branch_from, "global_step": self.state.global_step}
        return metadata

    def _callbacks(self, on_step) -> list[Callback]:
        callbacks: list[Callback] = []
        if self.reporter is not None:
            callbacks.append(Progress(self.reporter, self.config.epochs, self.steps_per_epoch, self.config.batch_size))
            callbacks.append(EtaNote(self.reporter, self.config.epochs))
        if self.writes and self.out_dir is not None:  # writes: the leader, with a run directory
            self.out_dir.mkdir(parents=True, exist_ok=True)
            write_run_config(self.metadata, self.out_dir)  # config.json (and skipped_files.txt)
            callbacks.append(MetricsFile(self.out_dir / "metrics.jsonl", self.state.metrics))
            if self.config.tensorboard == "on":
                callbacks.append(TensorBoardLog(self.out_dir / "tensorboard", purge_step=self.state.epoch + 1))
        if on_step is not None:
            callbacks.append(StepHook(on_step))
        return callbacks

    # ------------------------------------------------------------ the loop's parts

    @contextlib.contextmanager
    def session(self) -> Iterator[None]:
        """Signals become stop requests for the run's life; callbacks are closed however it ends."""
        with stop_requests(self.signal):
            try:
                self.model.model.train()
                yield
            finally:
                for callback in self.callbacks:
                    callback.on_end()

    def start_epoch(self) -> None:
        """A new epoch's data order and statistics (unless resuming within the epoch), callbacks, the clock."""
        state = self.state
        if state.permutation is None:
            state.permutation = epoch_order(self.data.train_labels, self.config.balance, self.streams["order"])
            self.stats, state.epoch_seconds = EpochStats.zeros(self.device), 0.0
        for callback in self.callbacks:
            callback.on_epoch_start(state.epoch, state.step)
        self.clock = time.perf_counter()

    def batches(self) -> Iterator[tuple[Tensor, Tensor, Tensor]]:
        """``(images, labels, indices)`` of the epoch's remaining steps; ``indices`` are dataset indices."""
        state, config = self.state, self.config
        assert state.permutation is not None, "start_epoch draws the epoch's order"
        return epoch_batches(self.data, state.permutation, state.step, config.images_per_step(), self.world,
                             self.device)  # fmt: skip

    def select(self, images: Tensor, labels: Tensor, indices: Tensor, selecting: bool) -> Selection:
        """The method on one batch: M candidates per image, one chosen (one random candidate when not
        ``selecting``), from the run's named streams; stale-loss gating reads the images' last losses."""
        if self.config.on_nonfinite == "raise" and self.out_dir is not None:
            # The random streams before the step: a non-finite raise saves the state as it was before it.
            self.before = self.streams.state()
        return self.method(
            self.scorer, images, labels, num_candidates=None if selecting else 1,
            generator=self.streams["augment"], extra_generator=self.streams["augment-extra"],
            select_generator=self.streams["select"], stale_losses=self.stale_losses[indices], order=indices,
        )  # fmt: skip

    def check_finite(self, out: StepOutput) -> None:
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

    def after_step(self, out: StepOutput, labels: Tensor, indices: Tensor, selection: Selection,
                   selecting: bool) -> Stop:  # fmt: skip
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

    def end_epoch(self) -> Stop:
        """Evaluate when due, record the epoch, hand the record to the callbacks, checkpoint."""
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
            state.test_error, state.test_loss = evaluate(self.model.model, data.test_images, data.test_labels,
                                                         self.device)  # fmt: skip
        record = epoch_record(
            state.epoch + 1, totals, test=(state.test_error, state.test_loss) if evaluated else None,
            lr=self.model.optimizer.param_groups[0]["lr"], seconds=state.epoch_seconds, elapsed=state.run_seconds,
            images_per_epoch=self.steps_per_epoch * config.images_per_step(),
            num_candidates=config.candidates_per_image(), nonfinite_steps=self.stats.nonfinite_steps,
        )  # fmt: skip
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

    def interrupted(self) -> TrainingInterrupted:
        """The exception that ends a run stopped by a signal, naming its checkpoint."""
        assert self.signal.signum is not None, "a run stops on a signal only once one arrived"
        return TrainingInterrupted(self.signal.signum, self.last_checkpoint, self.state.global_step)

    def _lap(self) -> None:
        """Add the time since the last lap to the epoch's training time."""
        now = time.perf_counter()
        self.state.epoch_seconds += now - self.clock
        self.clock = now

    # ------------------------------------------------------------ checkpoints and results

    def save(self, streams: dict[str, Tensor] | None = None, best: bool = False) -> Path | None:
        """Checkpoint the run; every rank calls this (each one's random streams and epoch sums are gathered).
        ``streams``: the random state to record (default: now); ``best``: also as best.pt. Never a non-finite state."""
        if self.out_dir is None:
            return None
        stats = self.stats.state_dict() if self.state.permutation is not None else None
        every_rank = self.world.gather_objects({**(streams or self.streams.state()), "epoch_stats": stats})
        if not self.world.leader:
            return self.out_dir / NEWEST
        learners = [learner for learner in (self.model, self.proxy) if learner is not None]
        if not all(state_is_finite(learner.model, learner.optimizer) for learner in learners):
            raise NonFiniteError(nonfinite_not_saved(self.state.global_step, self.out_dir))
        checkpoint = RunCheckpoint(
            **self.model.state_dict(),
            proxy=self.proxy.state_dict() if self.proxy is not None else None,
            random=every_rank,
            position=self.state.state_dict(),
            global_step=self.state.global_step,
            num_classes=self.data.num_classes,
            config=dataclasses.asdict(self.config),
            schedule=dataclasses.asdict(self.schedule),
            data_fingerprint=self.fingerprint,
            init=self.init_report,
            stale_losses=self.stale_losses.cpu(),
            inputs=self.data.input_spec(),
            classes=list(self.data.classes),
        )
        return self.saver.save(checkpoint, best=best)

    def result(self) -> RunResult:
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
        counts = confusion_matrix(self.model.model, data.test_images, data.test_labels, data.num_classes,
                                  self.device) if final_due else None  # fmt: skip
        if not self.writes or self.out_dir is None:  # writes: the leader, with a run directory
            return result
        if self.stop_step is not None:
            write_json({"global_step": state.global_step, "stop_step": self.stop_step,
                        "schedule": dataclasses.asdict(self.schedule)}, self.out_dir / "trunk.json")  # fmt: skip
            return result
        assert counts is not None, "final_due: counted above"
        extra: dict[str, Any] = {k: metadata[k] for k in ("world_size", "rank_parameter_checksums") if k in metadata}
        extra.update(self.validation.summary(state.metrics))  # why it stopped, its best epoch
        extra.update(test_examples=int(counts.sum()), num_classes=data.num_classes)  # granularity and chance
        write_final(self.out_dir, result, {**extra, "per_class_test_error": per_class_errors(counts, data.classes)})
        return result
