"""One run's parts, wired: what ``open_run`` (``epochs``) builds from a ``TrainConfig``, and how they are
checkpointed and restored.

``RunParts`` builds the data, the method, the networks with their optimizers and schedule, the random streams
and the position (restored from a checkpoint when resuming or branching), the run's metadata and its callbacks.
``save`` checkpoints them and ``_restore`` puts a checkpoint back: the same parts, both ways. The epochs are
driven by ``epochs.Run``, which extends these parts with the public epoch API.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, cast

import torch
from torch import Tensor, nn

from lossaug.data import data_fingerprint
from lossaug.errors import InputError
from lossaug.kinds import kind_named
from lossaug.models import Normalized, build_classifier, check_classifier_output, check_state_fits
from lossaug.progress import Reporter
from lossaug.run.checkpoint import NEWEST, CheckpointSaver, RunCheckpoint, nonfinite_not_saved
from lossaug.run.config import TrainConfig
from lossaug.run.distributed import World
from lossaug.run.finetune import apply_init, read_init
from lossaug.run.guards import EtaNote, run_warnings
from lossaug.run.interrupts import NonFiniteError
from lossaug.run.memory import check_run_memory
from lossaug.run.metadata import run_metadata, write_run_config
from lossaug.run.method import build_sgd, method_for, scoring_chunk
from lossaug.run.origin import check_restorable, run_origin, run_schedule, step_ratio
from lossaug.run.pipeline import prepare_data, resolve_device, use_device
from lossaug.run.rundir import remove_run_files
from lossaug.run.state import EpochStats, Learner, RunState, Streams
from lossaug.run.step import state_is_finite
from lossaug.run.telemetry import Callback, MetricsFile, Progress, StepHook, TensorBoardLog
from lossaug.run.validation import Validation
from lossaug.seeds import stream_seed
from lossaug.selection import Selection

__all__ = ["RunParts"]


class RunParts:
    """One run's parts, built from the config (and a checkpoint when resuming or branching): ``data``,
    ``method``, ``model`` (and ``proxy``) as ``Learner``, ``schedule``, ``streams``, ``state`` (the position),
    ``stats`` (the epoch's sums), ``stale_losses``, ``validation``, ``metadata`` and ``callbacks``. ``save``
    checkpoints them. Only the leader (rank 0) reports and writes."""

    def __init__(
        self,
        config: TrainConfig,
        reporter: Reporter | None,
        on_step: Callable[[int, Selection], None] | None,
        resume: bool,
        replaced: Sequence[Path] = (),
    ):
        self.config, self.device, self.world = config, resolve_device(config.device), World.current()
        if config.images_per_step() % self.world.size:
            raise InputError(
                f"images per step ({config.images_per_step()}, batch_size {config.batch_size}) must be "
                f"a multiple of the {self.world.size} processes"
            )
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
        self.method = method_for(
            config, data.mean, self.device, audio_rate=rate, image_side=self.image_side, num_classes=data.num_classes
        )
        self.steps_per_epoch = len(self.data.train_labels) // config.images_per_step()
        self.schedule = run_schedule(config, self.steps_per_epoch, origin, checkpoint)
        check_run_memory(config, self.data, self.device, self.world.size, self.method.augment)
        self._build_learners(init_tensors, origin, checkpoint)
        self.streams = Streams(config.seed, self.device, self.world.rank, self.world.size)
        self.state, self.stats = RunState(), EpochStats.zeros(self.device)
        # Each training image's last training loss (+inf until seen): stale-loss gating picks the rows to score
        # from it. Kept by every run, so that a gated branch starts from its trunk's table.
        self.stale_losses = torch.full((len(data.train_labels),), math.inf, device=self.device)
        if checkpoint is not None:
            assert origin is not None, "run_origin gives a checkpoint with its origin"
            self._restore(checkpoint, origin)
        stop_at = config.stop_at
        self.stop_step = math.ceil(stop_at * self.schedule.total_steps) if stop_at is not None else None
        self.validation = Validation.for_run(config, data.val_images, data.val_labels, self.device)
        self.metadata = self._metadata(origin)
        remove_run_files(list(replaced))  # --overwrite: the old run goes only now that this one is set up
        # The run is set up: now the advice for small data and runs that are not what they look like, if any.
        for message in run_warnings(config, data.train_labels, data.classes, data.kind, self.world.size):
            if self.world.leader:
                warnings.warn(message, stacklevel=4)  # at train's (or the caller of open_run's) call
        self.callbacks = self._callbacks(on_step)
        self._announce(origin)

    # ------------------------------------------------------------ set-up

    def _build_learners(self, init_tensors: dict | None, origin: str | None, checkpoint: RunCheckpoint | None) -> None:
        """``model`` (with what ``--init`` loaded), ``proxy`` (if any) and ``scorer``, the network that scores."""
        config = self.config
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

    def _announce(self, origin: str | None) -> None:
        """The run's one line: method, model, data, augmentation, device, and where it continues from."""
        if self.reporter is None:
            return
        config = self.config
        resumed = f", {origin} at epoch {self.state.epoch + 1} step {self.state.step}" if origin else ""
        noun = kind_named(self.data.kind).noun
        self.reporter.log(
            f"{config.method} (M={config.candidates_per_image()}, T={config.resolved_temperature()}) "
            f"{config.model} on {config.dataset}: {len(self.data.train_labels)} train / "
            f"{len(self.data.test_labels)} test {noun}, augment {self.metadata['resolved']['augment']!r}, "
            f"{self.metadata['device']}{resumed}"
        )

    def _network(self, stream: str, name: str, width: int | None) -> Normalized:
        """A network behind normalisation, initialised from its own random stream."""
        data = self.data
        net = build_classifier(
            name,
            data.num_classes,
            data.in_channels,
            width,
            (data.mean, data.std),
            device=self.device,
            init_seed=stream_seed(self.config.seed, stream),
            sample_rate=data.sample_rate,
        )
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
        resolved = {
            "score_chunk": scoring_chunk(self.config, self.device),
            "num_candidates": self.config.candidates_per_image(),
            "steps_per_epoch": self.steps_per_epoch,
            "schedule": dataclasses.asdict(self.schedule),
            "stop_step": self.stop_step,
            "augment": kind_named(self.data.kind).default_augment(self.config, self.image_side),
            "inputs": self.data.input_spec(),  # what the network takes (predict, export)
            "classes": list(self.data.classes),
            **self.data.notes,  # split made, files skipped
            "data_fingerprint": self.fingerprint,  # compare checks it
            "data_path": str(Path(self.config.data).absolute()) if self.config.data else None,
        }
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

    # ------------------------------------------------------------ checkpoints

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
