"""Two or more runs taking turns epoch by epoch in one thread, for ``lossaug demo``.

Each run is opened with ``open_run`` and driven through its public epoch API, as ``train`` drives it, so its run
directory is exactly what ``lossaug train`` writes for the same config. ``train_alternating`` owns the turns
(``Rotation``): a run's first turn is its set-up, each later one an epoch, and the timing of set-ups, epochs and
steps is read around those calls, so no turn's wait is ever counted as training time.
"""

from __future__ import annotations

import contextlib
import math
import signal
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

from lossaug.progress import Reporter
from lossaug.run.config import RunResult, TrainConfig
from lossaug.run.epochs import Run, open_run
from lossaug.run.interrupts import Stop, StopRequest, stop_requests

__all__ = ["Alternation", "DemoInterrupted", "Rotation", "train_alternating"]


class DemoInterrupted(Exception):
    """SIGTERM or SIGINT stopped the demo; each arm's run directory keeps the checkpoint of its last finished
    epoch (``lossaug train --resume DIR`` continues it)."""

    def __init__(self, signum: int, run_dirs: Sequence[str | None]):
        dirs = ", ".join(str(d) for d in run_dirs if d)
        super().__init__(
            f"{signal.Signals(signum).name} received: demo stopped; {dirs or 'its runs'} keep the checkpoint of "
            "their last finished epoch (continue one with: lossaug train --resume DIR)"
        )
        self.signum, self.exit_code = signum, 128 + signum


class Rotation:
    """Turns in a fixed order: iterating gives the names round and round until every one has left;
    ``leave(name)`` drops a name from the order. ``taken`` lists the names in the order they got their turns."""

    def __init__(self, names: Sequence[str]):
        self._names = list(names)
        self.taken: list[str] = []

    def __iter__(self) -> Iterator[str]:
        while self._names:
            for name in list(self._names):
                if name in self._names:  # not left during an earlier turn of this round
                    self.taken.append(name)
                    yield name

    def leave(self, name: str) -> None:
        self._names.remove(name)


class _Named:
    """A reporter that names the arm in the progress lines (silent without a reporter to pass them to)."""

    def __init__(self, name: str, reporter: Reporter | None):
        self.name, self.reporter = name, reporter

    def start(self, title: str, total: int) -> None:
        if self.reporter is not None:
            self.reporter.start(f"{self.name} {title}", total)

    def advance(self, count: int, info: str = "") -> None:
        if self.reporter is not None:
            self.reporter.advance(count, info)

    def finish(self, line: str) -> None:
        if self.reporter is not None:
            self.reporter.finish(f"{self.name}: {line}")

    def log(self, line: str) -> None:
        if self.reporter is not None:
            self.reporter.log(f"{self.name}: {line}")


@dataclass
class _Timings:
    """One arm's wall-clock: its set-up turn, every epoch's turn and every step."""

    setup: float = math.nan  # opening the run (a resume's loads its checkpoint)
    epochs: list[float] = field(default_factory=list)  # each epoch's turn, evaluation and checkpoint included
    steps: list[float] = field(default_factory=list)  # each step, from the previous one or the turn's start


@dataclass(frozen=True)
class Alternation:
    """What ``train_alternating`` returns."""

    results: dict[str, RunResult]  # empty when the runs stopped after ``rounds``
    step_seconds: dict[str, tuple[float, ...]]  # every step's wall-clock, in order
    taken: tuple[str, ...]  # the names in the order they got their turns (the first turn of each is its set-up)
    epoch_seconds: dict[str, tuple[float, ...]]  # every finished epoch's turn, evaluation and checkpoint included
    setup_seconds: dict[str, float]  # each run's set-up turn (a resume's loads its checkpoint)


def _epoch_turn(run: Run, steps: list[float], stop: StopRequest, clock: Callable[[], float]) -> Stop:
    """One epoch of ``run``, each step's wall-clock appended to ``steps``. Returns why the run stops after it;
    ``Stop.SIGNAL`` when the demo's ``stop`` was requested: the epoch is then left after the current step, and
    the run keeps the checkpoint of its last finished epoch."""
    run.start_epoch()
    last = clock()
    for reason in run.steps():
        now = clock()  # also on CUDA: the step read its finite flag, so it has finished
        steps.append(now - last)
        last = now
        if stop.signum is not None:
            return Stop.SIGNAL
        if reason is not Stop.NONE:  # a trunk's end: checkpointed after this step
            return reason
    return run.end_epoch()


def train_alternating(
    configs: Mapping[str, TrainConfig],
    reporter: Reporter | None = None,
    *,
    overwrite: bool = False,
    resume: bool = False,
    rounds: int | None = None,
    on_epoch: Callable[[str, float], None] | None = None,
    clock: Callable[[], float] = time.perf_counter,
) -> Alternation:
    """Train every config (``resume``: from its run directory's checkpoint), one epoch at a time in turn (in
    ``configs``' order), all in this thread; with ``rounds``, only that many epochs each (no results; the runs
    resume from their checkpoints). ``on_epoch(name, seconds)`` follows each finished epoch, with its wall-clock
    (evaluation and checkpoint included). A failing run's exception is raised here at once, every run closed
    with its last checkpoint; SIGINT or SIGTERM stops them all after the current step or turn and raises
    ``DemoInterrupted``."""
    rotation, times = Rotation(list(configs)), {name: _Timings() for name in configs}
    runs: dict[str, Run] = {}
    results: dict[str, RunResult] = {}
    dirs = [config.out for config in configs.values()]
    with stop_requests() as stop, contextlib.ExitStack() as open_runs:  # the runs close before the handlers go
        for name in rotation:
            if stop.signum is not None:  # the demo's signal: no run starts another turn
                raise DemoInterrupted(stop.signum, dirs)
            began, timing = clock(), times[name]
            if name not in runs:  # the first turn: the set-up
                run = open_run(configs[name], reporter=_Named(name, reporter), overwrite=overwrite, resume=resume)
                runs[name] = open_runs.enter_context(run)
                timing.setup = clock() - began
                continue
            reason = _epoch_turn(runs[name], timing.steps, stop, clock)
            if reason is Stop.SIGNAL:  # the demo's signal (the runs hear none of their own): nor another step
                assert stop.signum is not None, "only the demo's signal stops a run here"
                raise DemoInterrupted(stop.signum, dirs)
            over = reason is not Stop.NONE or runs[name].epochs_left == 0  # a trunk's end, early stop, last epoch
            if over:
                results[name] = runs[name].finish()
            timing.epochs.append(clock() - began)
            if on_epoch is not None:
                on_epoch(name, timing.epochs[-1])
            if over or len(timing.epochs) == rounds:
                rotation.leave(name)
    steps = {name: tuple(timing.steps) for name, timing in times.items()}
    epochs = {name: tuple(timing.epochs) for name, timing in times.items()}
    setups = {name: timing.setup for name, timing in times.items()}
    return Alternation(results, steps, tuple(rotation.taken), epochs, setups)
