"""Run metadata for config.json (resolved config, git commit and dirty flag, versions, device) and the atomic
JSON writer every run file goes through."""

from __future__ import annotations

import dataclasses
import errno
import json
import os
import platform
import subprocess
import time
from pathlib import Path
from typing import Any

import torch

import lossaug
from lossaug.config import TrainConfig


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


def git_commit() -> str | None:
    """The commit of the lossaug source tree, or None outside a git checkout."""
    return _git("rev-parse", "HEAD") or None


def git_dirty() -> bool | None:
    """Whether the source tree has uncommitted changes to tracked files (None outside a git checkout)."""
    status = _git("status", "--porcelain", "--untracked-files=no")
    return None if status is None else bool(status)


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


def write_json(payload: Any, path: Path) -> None:
    """Write ``payload`` to ``path`` atomically (temporary file, then rename). Any OS error (a full disk
    included) names ``path`` and leaves no temporary file behind."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "w") as handle:
            handle.write(json.dumps(payload, indent=2, default=str) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except OSError as error:
        tmp.unlink(missing_ok=True)
        reason = error.strerror or os.strerror(error.errno or errno.EIO)
        raise OSError(error.errno, f"could not write {path}: {reason}") from error
