"""Run metadata for config.json (resolved config, git commit and dirty flag, versions, device) and the atomic
JSON writer every run file goes through."""

from __future__ import annotations

import dataclasses
import errno
import json
import os
import platform
import re
import subprocess
import time
from pathlib import Path
from typing import Any

import torch

import lossaug
from lossaug.errors import InputError
from lossaug.run.config import TrainConfig


def _cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo on Linux (platform.processor() is empty there)."""
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({_cpu_model()}, {torch.get_num_threads()} threads)"


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=Path(__file__).parent, capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


# A copy of the checkout without .git (the device machine's) learns its commit from this variable or, failing that,
# this file at the checkout's root (ignored by git; experiments/gpu_session.sh --prepare writes it before the copy):
# the commit, then optionally "dirty" or "clean", separated by white space.
COMMIT_VARIABLE = "LOSSAUG_GIT_COMMIT"
COMMIT_FILE = Path(__file__).resolve().parents[2] / ".git_commit"


def _recorded_commit() -> tuple[str, bool | None] | None:
    """``(commit, dirty)`` from ``COMMIT_VARIABLE`` or ``COMMIT_FILE``; None when neither is set."""
    text, where = os.environ.get(COMMIT_VARIABLE), COMMIT_VARIABLE
    if not text and COMMIT_FILE.is_file():
        text, where = COMMIT_FILE.read_text(errors="replace"), str(COMMIT_FILE)
    if not text or not text.strip():
        return None
    match = re.fullmatch(r"([0-9a-f]{7,40})(?:\s+(dirty|clean))?", text.strip())
    if match is None:
        raise InputError(f"{where} should hold a commit and optionally 'dirty' or 'clean', got {text.strip()[:80]!r}")
    return match[1], None if match[2] is None else match[2] == "dirty"


def git_commit() -> str | None:
    """The commit of the lossaug source tree: git's, else the recorded one (``COMMIT_VARIABLE``, ``COMMIT_FILE``),
    else None."""
    commit = _git("rev-parse", "HEAD")
    if commit:
        return commit
    recorded = _recorded_commit()
    return recorded[0] if recorded else None


def git_dirty() -> bool | None:
    """Whether the source tree has uncommitted changes to tracked files: git's answer, else the recorded one, else
    None."""
    status = _git("status", "--porcelain", "--untracked-files=no")
    if status is not None:
        return bool(status)
    recorded = _recorded_commit()
    return recorded[1] if recorded else None


def run_metadata(config: TrainConfig, device: torch.device, resolved: dict[str, Any]) -> dict[str, Any]:
    """What config.json records: the config, what was resolved from it at run time (``resolved``: e.g. the
    scoring chunk size actually used), provenance and environment."""
    return {
        "config": dataclasses.asdict(config),
        "resolved": resolved,
        "method": {"num_candidates": config.candidates_per_image(), "temperature": config.resolved_temperature()},
        "git_commit": git_commit(),
        "git_dirty": git_dirty(),
        "lossaug_version": lossaug.__version__,
        "torch_version": torch.__version__,
        "device": device_name(device),
        "python": platform.python_version(),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


SKIPPED_FILES = "skipped_files.txt"  # in a run directory: the files --skip-bad left out


def write_json(payload: Any, path: Path) -> None:
    """Write ``payload`` to ``path`` atomically (temporary file, then rename). Any OS error (a full disk
    included) names ``path`` and leaves no temporary file behind."""
    write_text(json.dumps(payload, indent=2, default=str) + "\n", path)


def write_run_config(metadata: dict[str, Any], out_dir: Path) -> None:
    """A run's ``config.json`` in ``out_dir``, and ``skipped_files.txt`` (one name a line) when its data loader
    left out undecodable files (``metadata["resolved"]["skipped_files"]``)."""
    write_json(metadata, out_dir / "config.json")
    skipped = metadata.get("resolved", {}).get("skipped_files")
    if skipped:
        write_text("".join(f"{name}\n" for name in skipped), out_dir / SKIPPED_FILES)


def write_text(text: str, path: Path) -> None:
    """Write ``text`` to ``path`` atomically, as ``write_json`` does."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "w") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except OSError as error:
        tmp.unlink(missing_ok=True)
        reason = error.strerror or os.strerror(error.errno or errno.EIO)
        raise OSError(error.errno, f"could not write {path}: {reason}") from error
