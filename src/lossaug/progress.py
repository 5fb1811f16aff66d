"""Console progress for long runs: a one-line bar with rate and ETA on a terminal, plain log lines otherwise.

``train`` reports through the small ``Reporter`` protocol; ``None`` means silent, so the library prints nothing
unless its caller (the CLI) asks it to.
"""

from __future__ import annotations

import sys
import time
from typing import Protocol, TextIO


class Reporter(Protocol):
    def start(self, title: str, total: int) -> None: ...
    def advance(self, count: int, info: str = "") -> None: ...
    def finish(self, line: str) -> None: ...
    def log(self, line: str) -> None: ...


def format_eta(seconds: float) -> str:
    """``mm:ss``, or ``h:mm:ss`` from an hour: how the bar shows times."""
    seconds = int(max(seconds, 0))
    return (
        f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
        if seconds >= 3600
        else (f"{seconds // 60:02d}:{seconds % 60:02d}")
    )


class ConsoleReporter:
    """Writes to ``stream``: a redrawn bar ``title |####....| 12/40 315.2 it/s ETA 00:08`` when it is a terminal,
    else only the ``finish`` and ``log`` lines."""

    def __init__(self, stream: TextIO = sys.stderr, unit: str = "img", min_interval: float = 0.2):
        self.stream = stream
        self.tty = hasattr(stream, "isatty") and stream.isatty()
        self.unit = unit
        self.min_interval = min_interval
        self.title, self.total, self.done, self.started, self.drawn = "", 0, 0, 0.0, 0.0

    def start(self, title: str, total: int) -> None:
        self.title, self.total, self.done = title, total, 0
        self.started = self.drawn = time.perf_counter()

    def advance(self, count: int, info: str = "") -> None:
        self.done += count
        now = time.perf_counter()
        if self.tty and (now - self.drawn >= self.min_interval or self.done >= self.total):
            self.drawn = now
            elapsed = max(now - self.started, 1e-9)
            rate = self.done / elapsed
            eta = (self.total - self.done) / rate if rate > 0 else 0.0
            filled = int(24 * self.done / max(self.total, 1))
            bar = "#" * filled + "." * (24 - filled)
            self.stream.write(
                f"\r{self.title} |{bar}| {self.done}/{self.total} {rate:.1f} {self.unit}/s "
                f"ETA {format_eta(eta)} {info}\x1b[K"
            )
            self.stream.flush()

    def finish(self, line: str) -> None:
        self.stream.write(("\r\x1b[K" if self.tty else "") + line + "\n")
        self.stream.flush()

    def log(self, line: str) -> None:
        self.finish(line)
