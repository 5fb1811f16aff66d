"""Two or more ``train`` runs taking turns epoch by epoch, each in its own thread, for ``lossaug demo``.

Each run is one ordinary ``train`` call, so its run directory is exactly what ``lossaug train`` writes for the same
config. ``Rotation`` lets only one thread compute at a time; the turn changes in the reporter's ``start``, which
``train`` calls at each epoch start (from ``telemetry.Progress``) after the previous epoch's evaluation and
checkpoint and before the epoch's clock starts, so waiting for a turn is never counted as training time.
"""

from __future__ import annotations

import math
import signal
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from lossaug.config import RunResult, TrainConfig
from lossaug.interrupts import stop_requests
from lossaug.progress import Reporter
from lossaug.selection import Selection
from lossaug.train import train

__all__ = ["Alternation", "DemoInterrupted", "DemoStopped", "Rotation", "RoundsDone", "train_alternating"]


class DemoStopped(Exception):
    """Raised in an arm's thread when the rotation stopped (the other arm failed, or a signal came)."""


class RoundsDone(Exception):
    """Raised in an arm's thread at the start of the epoch after its last round: the run's checkpoint holds the
    finished epochs, and ``train(config, resume=True)`` continues it."""


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
    """Threads taking turns in a fixed order: ``take(name)`` blocks until it is ``name``'s turn, ``pass_on(name)``
    hands it to the next name, ``leave(name)`` also drops ``name`` from the order. After ``stop()``, every waiting
    and later ``take`` and every ``check`` raise ``DemoStopped``. ``taken`` lists the names in the order they got
    their turns."""

    def __init__(self, names: Sequence[str]):
        self._names, self._current = list(names), 0
        self._holder: str | None = None  # the name whose turn it is, once taken
        self._stopped = False
        self._condition = threading.Condition()
        self.taken: list[str] = []

    def take(self, name: str) -> None:
        with self._condition:
            self._condition.wait_for(lambda: self._stopped or self._names[self._current] == name)
            self.check()
            self._holder = name
            self.taken.append(name)

    def pass_on(self, name: str) -> None:
        with self._condition:
            assert self._holder == name, (self._holder, name)
            self._holder, self._current = None, (self._current + 1) % len(self._names)
            self._condition.notify_all()

    def leave(self, name: str) -> None:
        with self._condition:
            index = self._names.index(name)
            del self._names[index]
            if self._holder == name:
                self._holder = None
            elif index < self._current:
                self._current -= 1
            self._current = self._current % len(self._names) if self._names else 0
            self._condition.notify_all()

    def stop(self) -> None:
        with self._condition:
            self._stopped = True
            self._condition.notify_all()

    def check(self) -> None:
        if self._stopped:
            raise DemoStopped("stopped")


class _Arm:
    """One arm's side of the alternation, handed to ``train`` as its reporter and ``on_step``: takes turns at
    each epoch start, names the arm in the progress lines, times its set-up, every epoch and every step (from the
    previous step, or from taking the turn), and ends the run with ``RoundsDone`` after ``rounds`` epochs."""

    def __init__(
        self,
        name: str,
        rotation: Rotation,
        reporter: Reporter | None,
        on_epoch: Callable[[str, float], None] | None,
        clock: Callable[[], float],
        rounds: int | None = None,
    ):
        self.name, self.rotation, self.reporter, self.on_epoch, self.clock = name, rotation, reporter, on_epoch, clock
        self.rounds = rounds
        self.step_seconds: list[float] = []
        self.epoch_seconds: list[float] = []
        self.setup_seconds = math.nan  # from taking the first turn to the first epoch's start
        self.epochs_started = 0
        self.turn_began = self.last_step = clock()

    def take_first_turn(self) -> None:
        self.rotation.take(self.name)
        self.turn_began = self.clock()

    def start(self, title: str, total: int) -> None:
        self.end_turn()
        if self.epochs_started == self.rounds:  # the epoch before was the last round's: its checkpoint is saved
            raise RoundsDone(f"{self.name} stopped after {self.rounds} rounds")
        self.rotation.pass_on(self.name)
        self.rotation.take(self.name)
        self.epochs_started += 1
        self.turn_began = self.last_step = self.clock()
        if self.reporter is not None:
            self.reporter.start(f"{self.name} {title}", total)

    def end_turn(self) -> None:
        """Record and report a finished epoch's turn (its steps, evaluation and checkpoint); the set-up turn is not
        one, but is timed."""
        seconds = self.clock() - self.turn_began
        if not self.epochs_started:
            self.setup_seconds = seconds
            return
        self.epoch_seconds.append(seconds)
        if self.on_epoch is not None:
            self.on_epoch(self.name, seconds)

    def advance(self, count: int, info: str = "") -> None:
        if self.reporter is not None:
            self.reporter.advance(count, info)

    def finish(self, line: str) -> None:
        if self.reporter is not None:
            self.reporter.finish(f"{self.name}: {line}")

    def log(self, line: str) -> None:
        if self.reporter is not None:
            self.reporter.log(f"{self.name}: {line}")

    def on_step(self, global_step: int, selection: Selection) -> None:
        self.rotation.check()
        now = self.clock()  # also on CUDA: the loop reads each step's finite flag, so the step has finished
        self.step_seconds.append(now - self.last_step)
        self.last_step = now


@dataclass(frozen=True)
class Alternation:
    """What ``train_alternating`` returns."""

    results: dict[str, RunResult]  # empty when the runs stopped after ``rounds``
    step_seconds: dict[str, tuple[float, ...]]  # every step's wall-clock, in order
    taken: tuple[str, ...]  # the names in the order they got their turns (the first turn of each is its set-up)
    epoch_seconds: dict[str, tuple[float, ...]]  # every finished epoch's turn, evaluation and checkpoint included
    setup_seconds: dict[str, float]  # each run's set-up turn (a resume's loads its checkpoint)


def _run_arm(
    arm: _Arm,
    config: TrainConfig,
    options: dict[str, bool],
    results: dict[str, RunResult],
    errors: dict[str, BaseException],
) -> None:
    try:
        arm.take_first_turn()
        results[arm.name] = train(config, reporter=arm, on_step=arm.on_step, **options)
        arm.end_turn()
    except RoundsDone:  # an ordinary end: the other arms go on to their own last round
        pass
    except BaseException as error:  # handed to the main thread, which raises it
        errors[arm.name] = error
        arm.rotation.stop()
    finally:
        arm.rotation.leave(arm.name)


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
    """``train`` every config (``resume``: from its run directory's checkpoint), one epoch at a time in turn (in
    ``configs``' order), each in its own thread; with ``rounds``, only that many epochs each (no results; the
    runs resume from their checkpoints). ``on_epoch(name, seconds)`` follows each finished epoch, with its
    wall-clock (evaluation and checkpoint included). A failing run stops the others (at their next step or turn)
    and its exception is raised here; SIGINT or SIGTERM stops them all and raises ``DemoInterrupted``."""
    rotation = Rotation(list(configs))
    results: dict[str, RunResult] = {}
    errors: dict[str, BaseException] = {}
    arms = {name: _Arm(name, rotation, reporter, on_epoch, clock, rounds) for name in configs}
    options = {"overwrite": overwrite, "resume": resume}
    threads = [
        threading.Thread(target=_run_arm, args=(arms[name], config, options, results, errors), name=f"lossaug-{name}")
        for name, config in configs.items()
    ]
    with stop_requests(on_request=rotation.stop) as stop:  # no arm starts a step or turn after a signal
        try:
            for thread in threads:
                thread.start()
            for thread in threads:  # the handler runs during a join (lock waits are interruptible on POSIX)
                thread.join()
        finally:
            rotation.stop()  # a no-op after a normal end; after a second Ctrl-C the arms stop at their next step
            for thread in threads:
                thread.join()
    if stop.signum is not None:
        raise DemoInterrupted(stop.signum, [config.out for config in configs.values()])
    failures = [error for error in errors.values() if not isinstance(error, DemoStopped)]
    if failures:
        raise failures[0]
    assert not errors, errors
    steps = {name: tuple(arm.step_seconds) for name, arm in arms.items()}
    epochs = {name: tuple(arm.epoch_seconds) for name, arm in arms.items()}
    setups = {name: arm.setup_seconds for name, arm in arms.items()}
    return Alternation(dict(results), steps, tuple(rotation.taken), epochs, setups)
