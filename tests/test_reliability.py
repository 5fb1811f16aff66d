"""Runs that survive: exact resume, atomic checkpoints, signals, non-finite losses and bad input (CPU, tiny runs)."""

import dataclasses
import errno
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import lossaug.run.checkpoint as checkpoint_module
import lossaug.run.step as step_module
from lossaug.cli import main
from lossaug.run.checkpoint import CheckpointError, load_checkpoint, newest_valid_checkpoint
from lossaug.run.train import NonFiniteError, TrainConfig, TrainingInterrupted, train

# 256 images / batch 32 = 8 steps per epoch, 16 steps in all.
TINY = dict(dataset="mini", train_size=256, model="cnn", width=4, epochs=2, batch_size=32, lr=0.05, device="cpu")


class Crash(Exception):
    pass


def recorder(crash_at: int | None = None, action=None):
    """An on_step hook recording each step's selected indices; raises Crash (or runs ``action``) at a step."""
    steps: dict[int, torch.Tensor] = {}

    def on_step(global_step, selection):
        steps[global_step] = selection.index.clone()
        if global_step == crash_at:
            if action is None:
                raise Crash(global_step)
            action()

    return steps, on_step


@pytest.fixture(scope="module")
def reference():
    """The uninterrupted run: final weights and every step's selected indices."""
    steps, on_step = recorder()
    result = train(TrainConfig(**TINY, checkpoint_every=3), on_step=on_step)
    return result, steps


def assert_same_run(result, steps, reference):
    ref_result, ref_steps = reference
    for key, value in ref_result.model.state_dict().items():
        assert torch.equal(value, result.model.state_dict()[key]), key
    for step, index in steps.items():
        assert torch.equal(index, ref_steps[step]), f"step {step} selected other candidates"
    timing = ("seconds", "elapsed_seconds", "images_per_second")
    strip = [{k: v for k, v in m.items() if k not in timing} for m in result.metrics]
    assert strip == [{k: v for k, v in m.items() if k not in timing} for m in ref_result.metrics]


@pytest.mark.parametrize(
    "crashes,checkpoint_every",
    [
        ([5], 3),  # mid-epoch: resumes from the step-3 checkpoint
        ([9], 0),  # just after an epoch boundary: resumes from the epoch-end checkpoint
        ([4, 7], 3),  # twice in one epoch
        ([16 - 1], 5),  # late in the last epoch
    ],
)
def test_resumed_run_equals_the_uninterrupted_run_bit_for_bit(tmp_path, reference, crashes, checkpoint_every):
    config = TrainConfig(**TINY, checkpoint_every=checkpoint_every, out=str(tmp_path / "run"))
    all_steps = {}
    for attempt, crash_at in enumerate(crashes):
        steps, on_step = recorder(crash_at)
        with pytest.raises(Crash):
            train(config, on_step=on_step, resume=attempt > 0)
        all_steps.update(steps)
    steps, on_step = recorder()
    result = train(config, on_step=on_step, resume=True)
    all_steps.update(steps)
    assert set(all_steps) == set(range(1, 17))
    assert_same_run(result, all_steps, reference)
    lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [1, 2]


@pytest.mark.parametrize("signum,code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_signal_stops_after_the_step_with_a_checkpoint_and_restores_handlers(tmp_path, reference, signum, code):
    config = TrainConfig(**TINY, out=str(tmp_path / "run"))
    caller_handler = lambda *_: None  # noqa: E731
    previous = signal.signal(signum, caller_handler)
    try:
        steps, on_step = recorder(5, lambda: os.kill(os.getpid(), signum))
        with pytest.raises(TrainingInterrupted) as stopped:
            train(config, on_step=on_step)
        assert signal.getsignal(signum) is caller_handler
        assert signal.getsignal(signal.SIGTERM if signum == signal.SIGINT else signal.SIGINT) is not None
    finally:
        signal.signal(signum, previous)
    assert stopped.value.exit_code == code and stopped.value.global_step == 5
    assert load_checkpoint(stopped.value.checkpoint)["global_step"] == 5
    more, on_step = recorder()
    result = train(config, on_step=on_step, resume=True)
    assert_same_run(result, {**steps, **more}, reference)


def cli_args(out: Path, *extra: str, train_size: int = 256) -> list[str]:
    """A 3-epoch CLI run checkpointing every 2 steps: 96 steps of batch 8 at the default ``train_size``."""
    return [
        "train", "--dataset", "mini", "--train-size", str(train_size), "--model", "cnn", "--width", "4",
        "--batch-size", "8", "--epochs", "3", "--lr", "0.05", "--device", "cpu", "--checkpoint-every", "2",
        "--out", str(out), *extra,
    ]  # fmt: skip


def wait_for(path: Path, process: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.02)


def run_cli(*argv: str, env=None) -> subprocess.Popen:
    env = {**os.environ, "LOSSAUG_CACHE": str(Path(argv[-1]).parent / "cache"), **(env or {})}
    return subprocess.Popen(
        [sys.executable, "-m", "lossaug", *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )


@pytest.mark.slow  # subprocesses, ~13 s
def test_kill_dash_9_at_a_random_step_then_resume_equals_uninterrupted(tmp_path):
    """Stale-loss gating on (half of each batch scored), so that its per-image loss table, which decides what is
    scored, must come back from the checkpoint exactly too."""
    reference_dir, killed_dir = tmp_path / "reference", tmp_path / "killed"
    one_thread = {"OMP_NUM_THREADS": "1"}  # the last two runs share the 2 cores
    gated = ("--score-fraction", "0.5")
    process = run_cli(*cli_args(killed_dir, *gated, train_size=384), env=one_thread)  # 144 steps: ~2 s of training
    wait_for(killed_dir / "checkpoint.pt", process)
    time.sleep(random.uniform(0.0, 0.5))  # well inside the run on a box several times faster
    process.kill()  # SIGKILL: no handler runs, no checkpoint is written on the way out
    process.communicate()
    assert process.returncode == -signal.SIGKILL
    killed_at = newest_valid_checkpoint(killed_dir)[1]["global_step"]
    assert killed_at < 144, "the run finished before it was killed; the test proves nothing"

    resumed = run_cli(*cli_args(killed_dir, *gated, "--resume", str(killed_dir), train_size=384), env=one_thread)
    uninterrupted = run_cli(*cli_args(reference_dir, *gated, train_size=384), env=one_thread)
    for process in (resumed, uninterrupted):
        _, err = process.communicate(timeout=300)
        assert process.returncode == 0, err
    final = load_checkpoint(killed_dir / "checkpoint.pt")
    expected = load_checkpoint(reference_dir / "checkpoint.pt")
    assert final["global_step"] == expected["global_step"] == 144
    for key, value in expected["model"].items():
        assert torch.equal(value, final["model"][key]), key
    assert torch.equal(final["stale_losses"], expected["stale_losses"])
    assert torch.isfinite(final["stale_losses"]).all()  # every image was seen in 3 epochs
    assert json.loads((killed_dir / "config.json").read_text())["resumed_from_step"] == killed_at


@pytest.mark.slow  # subprocess, ~11 s
def test_sigterm_to_the_cli_exits_143_and_says_how_to_resume(tmp_path):
    out = tmp_path / "run"
    process = run_cli(*cli_args(out))
    wait_for(out / "checkpoint.pt", process)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 143, err
    assert f"lossaug train --resume {out}" in err
    assert main(cli_args(out, "--resume", "auto")) == 0
    assert load_checkpoint(out / "checkpoint.pt")["global_step"] == 96


# ---------------------------------------------------------------- checkpoint files


def finished_run(tmp_path) -> Path:
    out = tmp_path / "run"
    train(TrainConfig(**TINY, out=str(out)))
    return out


def test_a_failed_save_leaves_the_previous_checkpoint_and_names_the_path(tmp_path, monkeypatch):
    out = tmp_path / "run"
    real_save, calls = torch.save, []

    def save_then_fill_the_disk(obj, handle):
        calls.append(1)
        if len(calls) == 2:
            handle.write(b"partial")
            raise OSError(errno.ENOSPC, "No space left on device")
        real_save(obj, handle)

    monkeypatch.setattr(checkpoint_module.torch, "save", save_then_fill_the_disk)
    with pytest.raises(OSError, match=f"could not save checkpoint {out / 'checkpoint.pt'}: No space left"):
        train(TrainConfig(**TINY, out=str(out)))
    assert load_checkpoint(out / "checkpoint.pt")["global_step"] == 8
    assert not (out / "checkpoint.pt.tmp").exists()


def test_truncated_newest_checkpoint_is_skipped_with_a_warning(tmp_path):
    out = finished_run(tmp_path)
    newest = out / "checkpoint.pt"
    newest.write_bytes(newest.read_bytes()[:1000])
    with pytest.warns(UserWarning, match=f"skipping checkpoint {newest}"):
        path, payload = newest_valid_checkpoint(out)
    assert path == out / "checkpoint.prev.pt" and payload["global_step"] == 8
    with pytest.warns(UserWarning):  # epochs may change on resume; the truncated file is skipped again
        result = train(TrainConfig(**{**TINY, "epochs": 3}, out=str(out)), resume=True)
    assert len(result.metrics) == 3


def test_no_valid_checkpoint_is_an_error(tmp_path):
    (tmp_path / "checkpoint.pt").write_bytes(b"not a checkpoint")
    with pytest.warns(UserWarning), pytest.raises(CheckpointError, match="no valid checkpoint"):
        newest_valid_checkpoint(tmp_path)
    with pytest.raises(CheckpointError, match="no checkpoint in"):
        newest_valid_checkpoint(tmp_path / "empty")


class Payload:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_checkpoint_is_refused_and_its_payload_never_runs(tmp_path):
    marker = tmp_path / "pwned"
    torch.save({"format": 1, "global_step": 99, "model": Payload(marker)}, tmp_path / "checkpoint.pt")
    with pytest.warns(UserWarning, match="unreadable or unsafe"), pytest.raises(CheckpointError):
        newest_valid_checkpoint(tmp_path)
    assert not marker.exists()


def test_resume_with_changed_options(tmp_path):
    out = finished_run(tmp_path)
    with pytest.raises(CheckpointError, match=r"changed model: 'cnn' -> 'preact_resnet18'; width: 4 -> 2"):
        train(TrainConfig(**{**TINY, "model": "preact_resnet18", "width": 2}, out=str(out)), resume=True)
    with pytest.warns(UserWarning, match=r"changed epochs: 2 -> 3; checkpoint_every: 0 -> 5"):
        train(TrainConfig(**{**TINY, "epochs": 3}, checkpoint_every=5, out=str(out)), resume=True)


def test_random_streams_saved_on_another_kind_of_device_are_refused_in_one_line(tmp_path):
    """A CUDA run's generators save a 16-byte seed and offset, which no CPU generator can continue (and the
    reverse): resuming there is a clear error, not torch's size mismatch from inside the loop."""
    out = finished_run(tmp_path)
    payload = load_checkpoint(out / "checkpoint.pt")
    for name in ("augment", "augment-extra", "select"):  # what torch.Generator("cuda").get_state() returns
        payload["random"][0][name] = torch.zeros(16, dtype=torch.uint8)
    checkpoint_module.save_checkpoint(payload, out)
    before = (out / "checkpoint.pt").read_bytes()
    with pytest.raises(CheckpointError, match=r"saved on another kind of device than cpu .* --init$"):
        train(TrainConfig(**{**TINY, "epochs": 3}, out=str(out)), resume=True)
    assert (out / "checkpoint.pt").read_bytes() == before  # nothing saved is lost


# ---------------------------------------------------------------- non-finite values


def nan_at_step(monkeypatch, bad_step: int):
    real, calls = step_module.training_loss, []

    def loss(logits, labels, label_smoothing=0.0):
        calls.append(1)
        value = real(logits, labels, label_smoothing)
        return value * float("nan") if len(calls) == bad_step else value

    monkeypatch.setattr(step_module, "training_loss", loss)


def test_nonfinite_loss_stops_with_the_step_after_saving_the_last_good_state(tmp_path, monkeypatch):
    nan_at_step(monkeypatch, 6)
    out = tmp_path / "run"
    with pytest.raises(NonFiniteError, match=r"non-finite loss at step 6 \(epoch 1, step 6\); last good state saved"):
        train(TrainConfig(**TINY, out=str(out)))
    saved = load_checkpoint(out / "checkpoint.pt")
    assert saved["global_step"] == 5
    assert all(torch.isfinite(v).all() for v in saved["model"].values() if v.is_floating_point())


def test_nonfinite_loss_skipped_and_counted(monkeypatch, reference):
    nan_at_step(monkeypatch, 6)
    result = train(TrainConfig(**TINY, on_nonfinite="skip"))
    assert [m["nonfinite_steps"] for m in result.metrics] == [1, 0]
    assert all(torch.isfinite(p).all() for p in result.model.parameters())
    assert not torch.equal(result.model.state_dict()["net.linear.weight"],
                           reference[0].model.state_dict()["net.linear.weight"])  # fmt: skip


# ---------------------------------------------------------------- bad data


def write_folder(root: Path, sizes: dict[str, tuple[int, int]]) -> Path:
    for split in ("train", "test"):
        for cls, size in sizes.items():
            (root / split / cls).mkdir(parents=True, exist_ok=True)
            for i in range(3):
                Image.fromarray(np.full((*size, 3), 40 * i, dtype=np.uint8)).save(root / split / cls / f"{i}.png")
    return root


def test_mixed_image_sizes_need_image_size_and_train_with_it(tmp_path, capsys):
    root = write_folder(tmp_path / "data", {"a": (12, 12), "b": (16, 10)})
    base = ["train", "--dataset", "folder", "--data", str(root), "--model", "cnn", "--width", "2", "--epochs", "1",
            "--batch-size", "2", "--device", "cpu", "--out", str(tmp_path / "run")]  # fmt: skip
    assert main(base) == 2
    assert "--image-size" in capsys.readouterr().err
    assert main([*base, "--image-size", "8"]) == 0


def test_labels_outside_the_classes_are_rejected_before_training():
    from lossaug.data import ImageDataset, Split

    images = torch.zeros(4, 3, 8, 8, dtype=torch.uint8)
    with pytest.raises(ValueError, match="5"):
        ImageDataset("bad", ("a", "b"), Split(images, torch.tensor([0, 1, 5, 1])), Split(images, torch.zeros(4).long()))


def test_resume_without_run_dir_or_checkpoint(tmp_path, capsys):
    with pytest.raises(ValueError, match="resume needs config.out"):
        train(TrainConfig(**TINY), resume=True)
    assert main(["train", "--resume", str(tmp_path / "nowhere")]) == 2
    assert "no such run directory" in capsys.readouterr().err
    assert dataclasses.replace(TrainConfig(**TINY), epochs=1).epochs == 1


def test_resume_applies_a_changed_learning_rate(tmp_path):
    from lossaug.run.train import cosine_lr

    out = finished_run(tmp_path)
    with pytest.warns(UserWarning, match="lr: 0.05 -> 0.01"):
        result = train(TrainConfig(**{**TINY, "epochs": 4, "lr": 0.01}, out=str(out)), resume=True)
    assert result.metrics[2]["lr"] == pytest.approx(0.01 * cosine_lr(24, 32, 0))
    assert result.metrics[1]["lr"] == pytest.approx(0.05 * cosine_lr(16, 16, 0))  # from before the resume


def test_a_nonfinite_step_leaves_weights_and_batchnorm_statistics_untouched():
    from lossaug.models import Normalized, build_model
    from lossaug.run.train import train_step

    torch.manual_seed(0)
    model = Normalized(build_model("cnn", 10, 3, 4), (0.5,) * 3, (0.2,) * 3).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    images = torch.rand(4, 3, 8, 8) * 255
    images[0, 0, 0, 0] = float("inf")
    _, _, finite = train_step(model, optimizer, images, torch.arange(4), torch.device("cpu"))
    assert not finite
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key


@pytest.mark.parametrize("at_step,raises", [(8, True), (16, False)])
def test_signal_at_an_epoch_end(tmp_path, reference, at_step, raises):
    config = TrainConfig(**TINY, out=str(tmp_path / "run"))
    steps, on_step = recorder(at_step, lambda: os.kill(os.getpid(), signal.SIGTERM))
    if not raises:  # the last step of the run: nothing left to stop, the run just finishes
        train(config, on_step=on_step)
        return
    with pytest.raises(TrainingInterrupted) as stopped:
        train(config, on_step=on_step)
    assert stopped.value.global_step == 8
    more, on_step = recorder()
    assert_same_run(train(config, on_step=on_step, resume=True), {**steps, **more}, reference)
