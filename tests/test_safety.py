"""Tests for what must not lose or poison a user's work (issue 11): checkpoint rotation and completeness, run
directory guard and lock, config-file layout and types, corrupt metrics files, warning output.

The process tests start a bare Python that loads one stdlib-only module by file path, so they skip importing
torch (seconds) in the child.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tarfile
import warnings
from pathlib import Path

import pytest
import torch

from lossaug.cli import UsageError, load_config_file, main
from lossaug.plots import read_run
from lossaug.run import checkpoint as checkpoint_module
from lossaug.run.checkpoint import (
    RESUME_KEYS,
    CheckpointError,
    load_checkpoint,
    newest_valid_checkpoint,
    require_keys,
    save_checkpoint,
)
from lossaug.run.rundir import RunDirError, RunLock, claim_run_dir

SRC = Path(__file__).resolve().parents[1] / "src" / "lossaug"


def _payload(step: int) -> dict:
    """A complete (resumable) checkpoint payload, tiny."""
    return {
        "model": {"w": torch.full((2,), float(step))},
        "optimizer": {"state": {}, "param_groups": []},
        "scheduler": {"last_epoch": step},
        "random": [{}],
        "position": {"epoch": 0, "step": step},
        "global_step": step,
        "num_classes": 10,
        "config": {"epochs": 1},
    }


# ---------------------------------------------------------------------------------------------------------------
# Item 4: a corrupt newest checkpoint never replaces the good backup


@pytest.mark.parametrize("seen_first", [True, False], ids=["after-resume-lookup", "fresh-process"])
def test_corrupt_newest_checkpoint_is_set_aside_not_rotated(tmp_path, monkeypatch, seen_first):
    monkeypatch.setattr(checkpoint_module, "_known", {})
    save_checkpoint(_payload(1), tmp_path)
    save_checkpoint(_payload(2), tmp_path)
    (tmp_path / "checkpoint.pt").write_bytes(b"garbage, e.g. a disk error")
    if seen_first:  # as a resume does: the lookup skips the bad file and resumes from .prev
        with pytest.warns(UserWarning, match="skipping checkpoint"):
            path, payload = newest_valid_checkpoint(tmp_path)
        assert path == tmp_path / "checkpoint.prev.pt" and payload["global_step"] == 1
    else:  # a process that never looked: the save itself finds out
        monkeypatch.setattr(checkpoint_module, "_known", {})
    with pytest.warns(UserWarning, match=r"checkpoint\.pt does not load; kept as .*checkpoint\.pt\.corrupt-"):
        save_checkpoint(_payload(3), tmp_path)
    assert load_checkpoint(tmp_path / "checkpoint.prev.pt")["global_step"] == 1  # the good backup survived
    assert load_checkpoint(tmp_path / "checkpoint.pt")["global_step"] == 3
    (aside,) = tmp_path.glob("checkpoint.pt.corrupt-*")
    assert aside.read_bytes() == b"garbage, e.g. a disk error"
    # Afterwards rotation goes on as usual, without loading what this process wrote itself.
    monkeypatch.setattr(checkpoint_module, "load_checkpoint", lambda path: pytest.fail(f"loaded {path} again"))
    save_checkpoint(_payload(4), tmp_path)
    assert torch.load(tmp_path / "checkpoint.prev.pt", weights_only=True)["global_step"] == 3


def test_checkpoint_missing_resume_keys_is_unusable_with_a_clear_message(tmp_path):
    incomplete = {k: v for k, v in _payload(5).items() if k not in ("optimizer", "random")}
    torch.save({**incomplete, "format": checkpoint_module.FORMAT}, tmp_path / "checkpoint.pt")
    with (
        pytest.warns(UserWarning, match=r"checkpoint\.pt lacks \['optimizer', 'random'\]"),
        pytest.raises(CheckpointError, match="no valid checkpoint"),
    ):
        newest_valid_checkpoint(tmp_path)
    # A reader that needs less (e.g. a model viewer) asks for less.
    path, payload = newest_valid_checkpoint(tmp_path, keys=("model", "config", "num_classes"))
    assert payload["global_step"] == 5
    with pytest.raises(CheckpointError, match=r"x\.pt lacks \['scheduler'\]"):
        require_keys({"model": 1}, ("model", "scheduler"), Path("x.pt"))
    with pytest.raises(CheckpointError, match="global_step 'seven', not an int"):
        require_keys({**_payload(1), "global_step": "seven"}, RESUME_KEYS, Path("x.pt"))


# ---------------------------------------------------------------------------------------------------------------
# Items 2 and 3: run directory guard and lock


def test_a_directory_holding_a_run_is_never_overwritten_silently(tmp_path):
    out = tmp_path / "run"
    claim_run_dir(out, resume=False, overwrite=False)  # a new directory: fine
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    claim_run_dir(out, resume=False, overwrite=False)  # a directory without a run: fine
    for name in ("metrics.jsonl", "checkpoint.pt", "checkpoint.prev.pt", "final.json"):
        (out / name).write_text("{}")
    # lossaug's config.json marks the folder as a run (see tests/test_nothing_lost.py for files it did not write)
    (out / "config.json").write_text(json.dumps({"lossaug_version": "0", "config": {"tensorboard": "on"}}))
    (out / "tensorboard").mkdir()
    (out / "tensorboard" / "events").write_text("x")
    with pytest.raises(RunDirError, match=r"already holds a run \(checkpoint.prev.pt, .*--resume.*--overwrite"):
        claim_run_dir(out, resume=False, overwrite=False)
    claim_run_dir(out, resume=True, overwrite=False)
    assert (out / "checkpoint.pt").exists()
    claim_run_dir(out, resume=False, overwrite=True)
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]  # only the run's own files went
    with pytest.raises(RunDirError, match="exclude each other"):
        claim_run_dir(out, resume=True, overwrite=True)


_HOLD_LOCK = """
import importlib.util, sys, time
spec = importlib.util.spec_from_file_location("rundir", sys.argv[1])
rundir = importlib.util.module_from_spec(spec)
spec.loader.exec_module(rundir)
with rundir.RunLock(sys.argv[2]):
    print("locked", flush=True)
    time.sleep(60)
"""


@pytest.mark.slow  # subprocess holding the lock
def test_run_lock_names_the_holder_and_is_freed_by_kill_9(tmp_path):
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLD_LOCK, str(SRC / "run" / "rundir.py"), str(tmp_path)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(RunDirError, match=rf"in use by process {holder.pid}\b"):
            RunLock(tmp_path).acquire()
    finally:
        holder.kill()  # SIGKILL: no cleanup runs in the holder
        holder.wait()
    assert (tmp_path / ".lock").read_text().strip() == str(holder.pid)  # what it left behind
    with RunLock(tmp_path) as lock:  # the kernel dropped the dead holder's lock
        assert (tmp_path / ".lock").read_text().strip() == str(os.getpid())
        with pytest.raises(RunDirError, match=rf"in use by process {os.getpid()}\b"):
            RunLock(tmp_path).acquire()
    assert lock._fd is None
    with RunLock(tmp_path):  # released on exit, an exception included
        pass


# ---------------------------------------------------------------------------------------------------------------
# Item 5: config files have one layout and typed values


@pytest.mark.parametrize(
    "text, match",
    [
        ("epochs = 3\n[train]\nlr = 0.5\n", r"has a \[train\] table and also options outside it: \['epochs'\]"),
        ("lr = true\n", r"bad value True for 'lr'.*expected a float, got a boolean"),
        ('lr = "0.1"\n', r"bad value '0.1' for 'lr'.*expected a float, got a string"),
        ("epochs = 2.5\n", r"'epochs'.*expected an integer, got a float"),
        ("epochs = true\n", r"'epochs'.*expected an integer, got a boolean"),
        ("width = 1.0\n", r"'width'.*expected an integer or \"none\", got a float"),
        ("model = 3\n", r"'model'.*expected a string, got an integer"),
        ("[train]\nlearning_rate = 0.1\n", r"unknown option 'learning_rate'"),
        ("[other]\nlr = 0.1\n", r"unknown option 'other'"),
        ("batch_size = 8\nbatch-size = 16\n", r"'batch_size' is given twice"),
    ],
)
def test_config_file_layout_and_types_are_checked(tmp_path, text, match):
    path = tmp_path / "run.toml"
    path.write_text(text)
    with pytest.raises(UsageError, match=match) as error:
        load_config_file(path)
    assert str(path) in str(error.value) and "\n" not in str(error.value)


def test_config_file_accepts_either_layout(tmp_path):
    top, table = tmp_path / "top.toml", tmp_path / "table.toml"
    top.write_text('lr = 1\nepochs = 3\nwidth = "none"\ntemperature = inf\n')
    table.write_text('[compare]\nseeds = [0]\n\n[train]\nlr = 1\nepochs = 3\nwidth = "none"\ntemperature = inf\n')
    for path in (top, table):
        values = load_config_file(path)
        assert values == {"lr": 1.0, "epochs": 3, "width": None, "temperature": float("inf")}
        assert type(values["lr"]) is float


# ---------------------------------------------------------------------------------------------------------------
# Item 8: report on a corrupt metrics file names the file and line


def test_corrupt_metrics_file_names_file_and_line(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    config = {"method": "baseline", "setting": "A", "seed": 0, "epochs": 2, "eval_every": 1}
    (run / "config.json").write_text(json.dumps({"config": config}))
    good = {"epoch": 1, "test_error": 0.5, "test_loss": 1.0, "elapsed_seconds": 1.0, "entropy": 0.0,
            "uniform_entropy": 0.0, "chosen_score_ratio": None}  # fmt: skip
    (run / "metrics.jsonl").write_text(json.dumps(good) + '\n{"epoch": 2, "test_err\n')
    metrics = run / "metrics.jsonl"
    with pytest.raises(ValueError, match=rf"^{metrics} line 2 is not valid JSON"):
        read_run(run)
    assert main(["report", str(run), "--out", str(tmp_path / "r.png")]) == 2
    err = capsys.readouterr().err
    assert f"{metrics} line 2" in err and err.count("\n") == 1
    (run / "metrics.jsonl").write_text(json.dumps(good) + "\n[1, 2]\n")
    with pytest.raises(ValueError, match=rf"{metrics} line 2 is not an epoch record"):
        read_run(run)
    (run / "metrics.jsonl").write_text(json.dumps(good) + "\n")
    (run / "config.json").write_text("{")
    with pytest.raises(ValueError, match=rf"{run / 'config.json'} is not a lossaug run config"):
        read_run(run)


# ---------------------------------------------------------------------------------------------------------------
# Item 12: each warning printed once, as one plain line


@pytest.mark.slow  # two tiny training runs: ~3 s on 2 idle cores
def test_cli_prints_each_warning_once_as_one_line(tmp_path, capsys):
    out = tmp_path / "run"
    tiny = ["--dataset", "mini", "--train-size", "64", "--model", "cnn", "--width", "4", "--batch-size", "32",
            "--method", "baseline", "--eval-every", "100", "--device", "cpu",
            "--cache-dir", str(tmp_path / "cache")]  # fmt: skip
    assert main(["train", *tiny, "--epochs", "2", "--out", str(out)]) == 0
    capsys.readouterr()
    (out / "checkpoint.pt").write_bytes(b"not a checkpoint")  # skipped, by the CLI and by train alike
    assert main(["train", "--resume", str(out), "--epochs", "3"]) == 0
    err = capsys.readouterr().err
    warning_lines = [line for line in err.splitlines() if "warning" in line.lower()]
    assert all(line.startswith("lossaug: warning: ") for line in warning_lines), err
    assert sum("skipping checkpoint" in line for line in warning_lines) == 1, err
    assert sum("changed epochs: 2 -> 3" in line for line in warning_lines) == 1, err
    assert "UserWarning" not in err and ".py:" not in err


def test_warning_format_dedups_by_message_not_by_caller(capsys):
    from lossaug.cli import _install_warning_format

    with warnings.catch_warnings():
        warnings.simplefilter("always")
        _install_warning_format()
        warnings.warn("first line\n  second line", stacklevel=1)
        warnings.warn("first line\n  second line", stacklevel=1)  # another line of the caller
        warnings.warn("other", DeprecationWarning, stacklevel=1)
    assert capsys.readouterr().err == "lossaug: warning: first line second line\nlossaug: warning: other\n"


# ---------------------------------------------------------------------------------------------------------------
# Item 11: SIGTERM during extraction leaves nothing behind


_EXTRACT_THEN_SIGTERM = """
import importlib.util, os, signal, sys, tarfile
spec = importlib.util.spec_from_file_location("_archive", sys.argv[1])
archive = importlib.util.module_from_spec(spec)
spec.loader.exec_module(archive)
real = tarfile.TarFile.extract
def extract_then_terminate(self, member, *args, **kwargs):
    real(self, member, *args, **kwargs)
    os.kill(os.getpid(), signal.SIGTERM)  # as a scheduler would, mid-extraction
tarfile.TarFile.extract = extract_then_terminate
archive.safe_extract(sys.argv[2], sys.argv[3])
"""


@pytest.mark.slow  # subprocess
def test_sigterm_during_extraction_removes_the_partial_folder(tmp_path):
    source = tmp_path / "a.tar"
    with tarfile.open(source, "w") as tar:
        for i in range(3):
            member = tmp_path / f"f{i}.txt"
            member.write_text("x" * 100)
            tar.add(member, arcname=f"d/f{i}.txt")
    cache = tmp_path / "cache"
    cache.mkdir()
    done = subprocess.run(
        [sys.executable, "-c", _EXTRACT_THEN_SIGTERM, str(SRC / "data" / "archives.py"), str(source), str(cache / "d")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 128 + signal.SIGTERM, done.stderr
    assert list(cache.iterdir()) == []


def test_stale_partial_folders_of_dead_processes_are_removed(tmp_path):
    from lossaug.data import archives as _archive

    source = tmp_path / "a.tar"
    source.write_bytes(b"")  # never read: the destination below is a finished extraction
    cache = tmp_path / "cache"
    (cache / "d").mkdir(parents=True)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    host = _archive._HOST
    stale = cache / f".d.{host}.{dead.pid}.abc123xy.partial"
    live = cache / f".d.{host}.{os.getpid()}.abc123xy.partial"
    elsewhere = cache / f".d.otherhost.{dead.pid}.abc123xy.partial"
    unknown = cache / ".d.abc123xy.partial"  # an older lossaug's name: not ours to judge
    for folder in (stale, live, elsewhere, unknown):
        (folder / "half").mkdir(parents=True)
    assert _archive.safe_extract(source, cache / "d") == cache / "d"
    assert not stale.exists()
    assert live.exists() and elsewhere.exists() and unknown.exists()


def test_extraction_restores_the_sigterm_handler(tmp_path):
    from lossaug.data import archives as _archive

    previous = signal.getsignal(signal.SIGTERM)
    (tmp_path / "f").write_text("x")
    with tarfile.open(tmp_path / "a.tar", "w") as tar:
        tar.add(tmp_path / "f", arcname="f")
    _archive.safe_extract(tmp_path / "a.tar", tmp_path / "out")
    assert signal.getsignal(signal.SIGTERM) is previous
    assert (tmp_path / "out" / "f").read_text() == "x"
