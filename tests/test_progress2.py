"""Progress you can watch (issue 32): the bar carries the whole run's ETA; the "too slow?" hint comes only with a
long ETA. No assertion depends on this machine's speed: clocks are faked."""

from __future__ import annotations

import io

from lossaug.progress import ConsoleReporter, format_eta
from lossaug.run.guards import SLOW_ETA_SECONDS, EtaNote
from lossaug.run.telemetry import Progress


class Lines:
    def __init__(self):
        self.lines: list[str] = []
        self.infos: list[str] = []

    def start(self, title: str, total: int) -> None: ...

    def advance(self, count: int, info: str = "") -> None:
        self.infos.append(info)

    def finish(self, line: str) -> None:
        self.lines.append(line)

    def log(self, line: str) -> None:
        self.lines.append(line)


def test_recipe_hint_only_for_a_long_eta():
    short, long = Lines(), Lines()
    EtaNote(short, epochs=4).on_epoch({"epoch": 1, "seconds": 3.0})  # 9 s to go
    EtaNote(long, epochs=4).on_epoch({"epoch": 1, "seconds": SLOW_ETA_SECONDS / 2})  # 15 min to go
    assert short.lines[0].startswith("ETA: about 9 s") and "too slow" not in short.lines[0]
    assert "too slow? see the README's recipe" in long.lines[0]


def test_bar_shows_the_whole_runs_eta(monkeypatch):
    clock = iter(float(t) for t in range(100))
    monkeypatch.setattr("lossaug.run.telemetry.time.perf_counter", lambda: next(clock))
    reporter = Lines()
    progress = Progress(reporter, epochs=3, steps_per_epoch=10, batch_size=4)  # clock 0
    progress.on_epoch_start(0, 0)  # clock 1
    for step in range(1, 3):
        progress.on_step(step, None)  # clocks 2, 3: one second a step
    # 28 steps left at 1 s each (the advance from on_epoch_start carries no ETA)
    assert reporter.infos[-1] == f"run ETA {format_eta(28)}" == "run ETA 00:28"


def test_a_log_gets_plain_lines_and_no_bar():
    stream = io.StringIO()
    reporter = ConsoleReporter(stream)
    reporter.start("epoch 1/2", 10)
    reporter.advance(5, "run ETA 00:10")
    reporter.finish("epoch 1/2 done")
    assert stream.getvalue() == "epoch 1/2 done\n"


def test_compare_says_run_k_of_n_with_an_eta(monkeypatch):
    from types import SimpleNamespace

    from lossaug.compare.progress import PlanClock

    def spec(epochs, finished=False, stop_at=None, branch_from=None):
        config = SimpleNamespace(epochs=epochs, stop_at=stop_at, branch_from=branch_from)
        return SimpleNamespace(config=config, finished=finished, out="x")

    clock_times = iter([0.0, 0.0, 0.0, 10.0, 10.0])  # init, start 1, start 2, done 2, start 3
    monkeypatch.setattr("lossaug.compare.progress.time.perf_counter", lambda: next(clock_times))
    specs = [spec(10, finished=True), spec(10), spec(10, stop_at=0.5), spec(10, branch_from="trunk")]
    clock = PlanClock(specs, branch_at=0.5)  # type: ignore[arg-type]
    assert clock.start(0) == "[run 1 of 4]"  # nothing timed yet: no ETA
    clock.done(0)  # found finished: teaches nothing
    assert clock.start(1) == "[run 2 of 4]"
    clock.done(1)  # 10 epochs in 10 s
    # left: this trunk's 5 epochs and the branch's 5, at 1 s each
    assert clock.start(2) == "[run 3 of 4, ETA 10 s for the rest]"
