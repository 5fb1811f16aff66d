"""How a run stops early: SIGTERM/SIGINT become a request honoured after the current step
(``stop_requests``), and the exceptions the loop raises when it stops (``TrainingInterrupted``,
``NonFiniteError``)."""

from __future__ import annotations

import contextlib
import enum
import signal
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any


class TrainingInterrupted(Exception):
    """SIGTERM or SIGINT stopped the run after a finished step; ``checkpoint`` holds it (None without ``out``)."""

    def __init__(self, signum: int, checkpoint: Path | None, global_step: int):
        name = signal.Signals(signum).name
        where = f"checkpoint saved to {checkpoint}" if checkpoint else "no run directory, nothing saved"
        super().__init__(f"{name} received: stopped after step {global_step}; {where}")
        self.signum, self.checkpoint, self.global_step = signum, checkpoint, global_step
        self.exit_code = 128 + signum  # 143 for SIGTERM, 130 for SIGINT, as shells report them


class Stop(enum.Enum):
    """Why the training loop stops after a step or an epoch: not at all, at a trunk's end, on a signal
    (SIGTERM/SIGINT: the checkpoint is written, the loop raises ``TrainingInterrupted``), or early (``--patience``
    epochs without a better validation error)."""

    NONE = "none"
    TRUNK_END = "trunk end"
    SIGNAL = "signal"
    EARLY = "early stop"


STOP_SYNC_STEPS = 8  # under torch.distributed: steps between the ranks' agreements on a stop signal


class NonFiniteError(FloatingPointError):
    """A training step came out non-finite under ``on_nonfinite="raise"``, or too many in a row under "skip"."""


@dataclass
class StopRequest:
    """A stop asked for by SIGTERM/SIGINT (``signum``; None: none yet), honoured after the current step."""

    signum: int | None = None


@contextlib.contextmanager
def stop_requests(
    request: StopRequest | None = None, on_request: Callable[[], None] | None = None
) -> Iterator[StopRequest]:
    """Turn SIGTERM/SIGINT into ``request.signum`` (a new ``StopRequest`` if None), honoured after the current
    step; a second SIGINT interrupts at once. ``on_request`` is called (in the main thread, from the handler) at
    the first request. The caller's handlers are restored on exit. Outside the main thread, installs nothing."""
    flag = request if request is not None else StopRequest()
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return

    def handle(signum: int, _frame: Any) -> None:
        if flag.signum is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        first = flag.signum is None
        flag.signum = signum
        if first and on_request is not None:
            on_request()

    previous = {sig: signal.signal(sig, handle) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield flag
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
