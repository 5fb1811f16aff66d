"""``lossaug demo``: baseline against proposed on the bundled mini CIFAR-10, sized to a wall-clock budget.

**Plan.** Unless ``epochs`` is given, a short calibration times the training step of each arm (``lossaug.bench``'s
interleaved repeats of the loop's own step, M = 1 and M = ``num_candidates``) and ``choose_epochs`` takes the most
epochs whose rounds (one epoch of every arm, evaluation included) fit in what is left of the budget.

**Alternate.** Each arm is one ordinary ``train`` call in its own thread, so its run directory is exactly what
``lossaug train`` writes for the same config. The threads take turns epoch by epoch (``Rotation``): only one ever
computes, and both arms see the same machine load. The turn changes in the reporter's ``start``, which ``train``
calls at each epoch start (from ``telemetry.Progress``) after the previous epoch's evaluation and checkpoint and
before the epoch's clock starts, so waiting for a turn is never counted as training time.

**Report.** Errors, total training time and its ratio, and the ratio of median per-step times (each step timed
from the ``on_step`` callback), which one slow stretch of the machine barely moves; ``summary.json`` and
``comparison.png`` in ``out``.
"""

from __future__ import annotations

import dataclasses
import math
import signal
import statistics
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lossaug.bench import BenchConfig, run_bench
from lossaug.config import DEVICES, PRESETS, RunResult, TrainConfig
from lossaug.data import load_mini_cifar10
from lossaug.errors import InputError
from lossaug.interrupts import stop_requests
from lossaug.metadata import write_json
from lossaug.progress import Reporter
from lossaug.rundir import run_files
from lossaug.selection import Selection
from lossaug.train import train

__all__ = [
    "ARMS", "BUDGET_SECONDS", "NOTE", "Alternation", "Calibration", "DemoConfig", "DemoInterrupted", "DemoResult",
    "Plan", "Rotation", "arm_configs", "calibrate", "choose_epochs", "format_table", "median_step_ratio", "note",
    "plan_epochs", "remaining_seconds", "run_demo", "summary", "train_alternating",
]  # fmt: skip

ARMS = ("baseline", "proposed")
# Wall-clock for the whole demo: with Python and torch start-up (a few seconds) and a plan that is off by a
# quarter, it still ends within 5 minutes.
BUDGET_SECONDS = 240.0
MIN_EPOCHS = 1
MAX_EPOCHS = 25  # the demo's former fixed length; a longer run adds nothing a one-seed demo can show
CALIBRATION_REPEATS = 4  # after one warm-up: ~5 s where a width-16 epoch of 5,000 images takes 7 s (~0.9 s/repeat)
# Estimates, not measured by the calibration: both arms' set-up (data copy, model, config.json), their final.json
# and curves.png and the comparison plot (matplotlib's import alone takes a second or two on a slow machine) ...
RESERVE_SECONDS = 10.0
# ... and per arm and epoch: the checkpoint (fsynced twice), the metrics line and the progress lines.
EPOCH_OVERHEAD_SECONDS = 0.3

NOTE = """\
What this shows: both arms ran the same model, data, epochs and seed, alternating epoch by epoch on the same
machine, so the step ratio (median time per step) is the price of scoring {candidates} candidates per image on
this device; the time ratio (total training time) agrees with it when the machine was steady. What it cannot show:
whether selection helps. This is one seed of a small CNN on 5,000 images for {epochs}, far from the
published regime (PreActResNet-18, 50,000 images, 200 epochs); a single seed cannot tell an effect of a point or
two from seed-to-seed noise. Settle that with several seeds per arm."""


class DemoStopped(Exception):
    """Raised in an arm's thread when the rotation stopped (the other arm failed, or a signal came)."""


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


@dataclass(frozen=True)
class DemoConfig:
    """One demo. The arms are the ``demo`` preset (mini, cnn, batch 128, lr 0.2), setting A."""

    out: str = "runs/demo"  # out/baseline and out/proposed are run directories; summary.json, comparison.png
    epochs: int | None = None  # per arm; None: chosen by the calibration to fit ``budget``
    budget: float = BUDGET_SECONDS  # wall-clock seconds for the whole demo, calibration included
    width: int = PRESETS["demo"]["width"]  # cnn width
    num_candidates: int = 4  # M of the proposed arm
    seed: int = 0
    device: str = "auto"
    overwrite: bool = False  # replace runs already in out/baseline and out/proposed

    def __post_init__(self) -> None:
        if self.epochs is not None and self.epochs < 1:
            raise InputError(f"epochs must be >= 1, got {self.epochs}")
        if not (math.isfinite(self.budget) and self.budget > 0):
            raise InputError(f"budget must be a positive number of seconds, got {self.budget}")
        for name in ("width", "num_candidates"):
            if getattr(self, name) < 1:
                raise InputError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.device not in DEVICES:
            raise InputError(f"unknown device {self.device!r}; choose from {list(DEVICES)}")


def arm_configs(config: DemoConfig, epochs: int) -> dict[str, TrainConfig]:
    """The two runs: identical but for the method; run directories ``out/<arm>``."""
    common = {**PRESETS["demo"], "width": config.width, "epochs": epochs, "setting": "A", "seed": config.seed,
              "device": config.device, "num_candidates": config.num_candidates}  # fmt: skip
    return {arm: TrainConfig(**common, method=arm, out=str(Path(config.out) / arm)) for arm in ARMS}


# ---------------------------------------------------------------- plan


@dataclass(frozen=True)
class Calibration:
    """Medians measured on this machine, in seconds."""

    step_seconds: dict[str, float]  # arm -> one training step of a batch
    forward_seconds: float  # one no-grad forward over a batch (evaluation is made of these)
    seconds: float  # what the calibration itself took


def calibrate(config: DemoConfig) -> Calibration:
    """Time each arm's training step with ``lossaug.bench`` (random images; the step ``train`` runs)."""
    preset, m = PRESETS["demo"], config.num_candidates
    bench = run_bench(
        BenchConfig(model=preset["model"], width=config.width, batch_size=preset["batch_size"],
                    candidate_counts=tuple(sorted({1, m})), setting="A", device=config.device,
                    repeats=CALIBRATION_REPEATS, warmup=1, seed=config.seed)
    )  # fmt: skip
    baseline, proposed = bench.timing(1), bench.timing(m)
    assert baseline is not None and proposed is not None  # both M were benched (candidate_counts above)
    steps = {"baseline": baseline.step.median / 1e3, "proposed": proposed.step.median / 1e3}
    return Calibration(steps, bench.score_forward.median / 1e3, bench.seconds)


def choose_epochs(round_seconds: float, seconds_left: float, floor: int = MIN_EPOCHS, ceiling: int = MAX_EPOCHS) -> int:
    """The most epochs per arm whose rounds (one epoch of every arm, ``round_seconds``) fit in ``seconds_left``,
    but at least ``floor`` and at most ``ceiling``."""
    if not round_seconds > 0 or not 1 <= floor <= ceiling:
        raise ValueError(f"need round_seconds > 0 and 1 <= floor <= ceiling, got {round_seconds}, {floor}, {ceiling}")
    return max(floor, min(ceiling, math.floor(max(seconds_left, 0.0) / round_seconds)))


@dataclass(frozen=True)
class Plan:
    """How long each arm trains, and why."""

    epochs: int
    reason: str  # one line for the log
    calibration: Calibration | None = None  # None when the epochs were given
    round_seconds: float | None = None  # estimated wall-clock of one epoch of both arms


def plan_epochs(config: DemoConfig, calibration: Calibration | None, spent: float, sizes: tuple[int, int]) -> Plan:
    """The epochs: ``config.epochs`` if given, else the most that fit the budget after ``spent`` seconds.
    ``sizes``: (training images, test images). A round costs every arm's steps, one evaluation each
    (``forward_seconds`` per batch of test images) and ``EPOCH_OVERHEAD_SECONDS`` each; ``RESERVE_SECONDS`` is kept
    for set-up and plots."""
    if config.epochs is not None:
        return Plan(config.epochs, f"{_count(config.epochs)} per arm, as given (no calibration)")
    assert calibration is not None
    batch = PRESETS["demo"]["batch_size"]
    steps, evaluation = sizes[0] // batch, math.ceil(sizes[1] / batch) * calibration.forward_seconds
    per_round = sum(steps * s + evaluation + EPOCH_OVERHEAD_SECONDS for s in calibration.step_seconds.values())
    left = config.budget - spent - RESERVE_SECONDS
    epochs = choose_epochs(per_round, left)
    ms = {arm: f"{1e3 * s:.0f} ms" for arm, s in calibration.step_seconds.items()}
    reason = (
        f"calibration: baseline {ms['baseline']}/step, proposed {ms['proposed']}/step (M={config.num_candidates}), "
        f"evaluation {evaluation:.1f} s; {steps} steps/epoch -> {per_round:.1f} s per epoch of both arms; "
        f"{left:.0f} s of the {config.budget:.0f} s budget left -> {_count(epochs)} per arm "
        f"(between {MIN_EPOCHS} and {MAX_EPOCHS})"
    )
    if epochs * per_round > left:
        reason += f"; over budget: {_count(epochs)} of both arms take longer than the budget allows on this machine"
    return Plan(epochs, reason, calibration, per_round)


# ---------------------------------------------------------------- alternation


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
    each epoch start, names the arm in the progress lines, and times every step (from the previous step, or from
    taking the turn)."""

    def __init__(self, name: str, rotation: Rotation, reporter: Reporter | None,
                 on_epoch: Callable[[str, float], None] | None, clock: Callable[[], float]):  # fmt: skip
        self.name, self.rotation, self.reporter, self.on_epoch, self.clock = name, rotation, reporter, on_epoch, clock
        self.step_seconds: list[float] = []
        self.epochs_started = 0
        self.turn_began = self.last_step = clock()

    def start(self, title: str, total: int) -> None:
        self.end_turn()
        self.rotation.pass_on(self.name)
        self.rotation.take(self.name)
        self.epochs_started += 1
        self.turn_began = self.last_step = self.clock()
        if self.reporter is not None:
            self.reporter.start(f"{self.name} {title}", total)

    def end_turn(self) -> None:
        """Report a finished epoch's turn (its steps, evaluation and checkpoint); the set-up turn is not one."""
        if self.epochs_started and self.on_epoch is not None:
            self.on_epoch(self.name, self.clock() - self.turn_began)

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

    results: dict[str, RunResult]
    step_seconds: dict[str, tuple[float, ...]]  # every step's wall-clock, in order
    taken: tuple[str, ...]  # the names in the order they got their turns (the first turn of each is its set-up)


def _run_arm(arm: _Arm, config: TrainConfig, overwrite: bool, results: dict[str, RunResult],
             errors: dict[str, BaseException]) -> None:  # fmt: skip
    try:
        arm.rotation.take(arm.name)
        results[arm.name] = train(config, reporter=arm, on_step=arm.on_step, overwrite=overwrite)
        arm.end_turn()
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
    on_epoch: Callable[[str, float], None] | None = None,
    clock: Callable[[], float] = time.perf_counter,
) -> Alternation:
    """``train`` every config, one epoch at a time in turn (in ``configs``' order), each in its own thread.
    ``on_epoch(name, seconds)`` follows each finished epoch, with its wall-clock (evaluation and checkpoint
    included). A failing run stops the others (at their next step or turn) and its exception is raised here; SIGINT
    or SIGTERM stops them all and raises ``DemoInterrupted``."""
    rotation = Rotation(list(configs))
    results: dict[str, RunResult] = {}
    errors: dict[str, BaseException] = {}
    arms = {name: _Arm(name, rotation, reporter, on_epoch, clock) for name in configs}
    threads = [threading.Thread(target=_run_arm, args=(arms[name], config, overwrite, results, errors),
                                name=f"lossaug-{name}") for name, config in configs.items()]  # fmt: skip
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
    return Alternation(dict(results), steps, tuple(rotation.taken))


def median_step_ratio(step_seconds: Mapping[str, Sequence[float]]) -> dict[str, float]:
    """Each arm's median step time over the first arm's (the baseline's)."""
    if any(len(times) == 0 for times in step_seconds.values()):
        raise ValueError(f"every arm needs timed steps, got {[len(t) for t in step_seconds.values()]}")
    medians = {name: statistics.median(times) for name, times in step_seconds.items()}
    first = next(iter(medians.values()))
    return {name: median / first for name, median in medians.items()}


def remaining_seconds(epoch_seconds: Mapping[str, Sequence[float]], epochs: int) -> float:
    """Estimated wall-clock left: each arm's remaining epochs at the mean of its finished ones (an arm with
    none finished counts at the others' mean)."""
    means = {name: statistics.fmean(s) for name, s in epoch_seconds.items() if s}
    if not means:
        return math.nan
    fallback = statistics.fmean(means.values())
    return sum((epochs - len(s)) * means.get(name, fallback) for name, s in epoch_seconds.items())


def _count(epochs: int) -> str:
    return f"{epochs} epoch{'s' if epochs != 1 else ''}"


def _minutes(seconds: float) -> str:
    seconds = max(int(round(seconds)), 0)
    return f"{seconds // 60}:{seconds % 60:02d}"


class _Eta:
    """After each round (every arm one epoch further), one line: epochs done, time elapsed, time left."""

    def __init__(self, epochs: int, log: Callable[[str], None], started: float, clock: Callable[[], float]):
        self.epochs, self.log, self.started, self.clock = epochs, log, started, clock
        self.seconds: dict[str, list[float]] = {arm: [] for arm in ARMS}

    def __call__(self, arm: str, seconds: float) -> None:
        self.seconds[arm].append(seconds)
        done = {len(s) for s in self.seconds.values()}
        if len(done) == 1 and 0 < (epoch := done.pop()) < self.epochs:
            left = remaining_seconds(self.seconds, self.epochs)
            self.log(f"demo: epoch {epoch}/{self.epochs} of both arms done, {_minutes(self.clock() - self.started)} "
                     f"elapsed, about {_minutes(left)} left")  # fmt: skip


# ---------------------------------------------------------------- the demo


@dataclass(frozen=True)
class DemoResult:
    """What ``run_demo`` returns; ``summary`` and ``format_table`` read it."""

    config: DemoConfig
    plan: Plan
    runs: dict[str, RunResult]
    step_seconds: dict[str, tuple[float, ...]]
    wall_seconds: float  # the whole demo, calibration and plots included
    summary_path: Path
    plot_path: Path | None  # None: matplotlib missing, no plot written


def _refuse_existing_runs(config: DemoConfig) -> None:
    """Fail before calibrating, rather than after, when a run directory already holds a run."""
    if config.overwrite:
        return
    for arm in ARMS:
        found = run_files(Path(config.out) / arm)
        if found:
            raise InputError(f"{Path(config.out) / arm} already holds a run ({', '.join(p.name for p in found)}); "
                             "pass --overwrite to replace it, or another --out")  # fmt: skip


def run_demo(
    config: DemoConfig, reporter: Reporter | None = None, clock: Callable[[], float] = time.perf_counter
) -> DemoResult:
    """Plan, train both arms in alternation, and write ``summary.json`` and ``comparison.png`` into ``config.out``;
    ``reporter`` gets the plan, the progress of both arms and an ETA after each epoch."""
    started = clock()
    log = reporter.log if reporter is not None else (lambda line: None)
    _refuse_existing_runs(config)
    data = load_mini_cifar10()  # decoded once per process (~0.5 s); the arms' loads are then copies (a few ms)
    sizes = (len(data.train.labels), len(data.test.labels))
    if config.epochs is None:
        log(
            f"demo: calibrating for a {config.budget:.0f} s budget (lossaug bench: each arm's step, 1 warm-up + "
            f"{CALIBRATION_REPEATS} interleaved repeats)"
        )
    calibration = calibrate(config) if config.epochs is None else None
    plan = plan_epochs(config, calibration, clock() - started, sizes)
    log(f"demo: {plan.reason}")
    if plan.round_seconds is not None:
        log(f"demo: alternating the arms epoch by epoch, about {_minutes(plan.epochs * plan.round_seconds)} to go")
    eta = _Eta(plan.epochs, log, started, clock)
    alternation = train_alternating(arm_configs(config, plan.epochs), reporter, overwrite=config.overwrite,
                                    on_epoch=eta, clock=clock)  # fmt: skip
    from lossaug.plots import plot_curves

    out = Path(config.out)
    plot = plot_curves({arm: r.metrics for arm, r in alternation.results.items()}, out / "comparison.png",
                       title="lossaug demo")  # fmt: skip
    result = DemoResult(config, plan, alternation.results, alternation.step_seconds, clock() - started,
                        out / "summary.json", plot)  # fmt: skip
    write_json(summary(result), result.summary_path)
    return result


def summary(result: DemoResult) -> dict[str, Any]:
    """summary.json: per arm (as before, plus step times), then the demo's ratios, plan and wall-clock."""
    runs, steps = result.runs, result.step_seconds
    base, step_ratio = runs[ARMS[0]], median_step_ratio(steps)
    out: dict[str, Any] = {
        arm: {
            "test_error": r.test_error, "train_error": r.train_error, "seconds": r.seconds,
            "time_ratio": r.seconds / base.seconds, "median_step_seconds": statistics.median(steps[arm]),
            "step_ratio": step_ratio[arm], "steps": len(steps[arm]), "run_dir": str(r.out_dir),
        }
        for arm, r in runs.items()
    }  # fmt: skip
    plan, calibration = result.plan, result.plan.calibration
    out.update(
        time_ratio=runs[ARMS[1]].seconds / base.seconds, median_step_ratio=step_ratio[ARMS[1]], epochs=plan.epochs,
        epochs_from="given" if calibration is None else "calibration", plan=plan.reason,
        calibration=None if calibration is None else {**dataclasses.asdict(calibration),
                                                      "round_seconds": plan.round_seconds},
        budget_seconds=result.config.budget, wall_seconds=result.wall_seconds, device=base.device,
        alternation="epoch by epoch, baseline first",
    )  # fmt: skip
    return out


def format_table(result: DemoResult) -> str:
    """The printed result: a heading, one row per arm, the wall-clock line."""
    runs, steps, config = result.runs, result.step_seconds, result.config
    base, step_ratio = runs[ARMS[0]], median_step_ratio(steps)
    rows = [("method", "test error", "train error", "train time", "time ratio", "median step", "step ratio")]
    for arm, r in runs.items():
        rows.append((arm, f"{r.test_error:.2%}", f"{r.train_error:.2%}", f"{r.seconds:.1f}s",
                     f"{r.seconds / base.seconds:.2f}x", f"{1e3 * statistics.median(steps[arm]):.0f} ms",
                     f"{step_ratio[arm]:.2f}x"))  # fmt: skip
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    chosen = "as given" if result.plan.calibration is None else f"calibrated to the {config.budget:.0f} s budget"
    lines = [f"lossaug demo: mini CIFAR-10, cnn width {config.width}, {_count(result.plan.epochs)} per arm ({chosen}), "
             f"seed {config.seed}, {base.device}"]  # fmt: skip
    lines += ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows]
    budget = f" (budget {_minutes(config.budget)})" if result.plan.calibration is not None else ""
    lines.append(f"whole demo {_minutes(result.wall_seconds)} wall-clock{budget}; arms alternated epoch by epoch")
    return "\n".join(lines)


def note(result: DemoResult) -> str:
    """What the demo shows and what it cannot."""
    return NOTE.format(candidates=result.config.num_candidates, epochs=_count(result.plan.epochs))
