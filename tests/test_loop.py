"""The restructured loop's promises: common random numbers, branching from a trunk, the stretched schedule, and
the guarded step (issues 10, 11 and 12). Tiny CPU runs."""

import json
import math

import pytest
import torch

from lossaug.augment import parse_augment
from lossaug.cli import main
from lossaug.run.checkpoint import load_checkpoint
from lossaug.run.method import Schedule
from lossaug.run.train import NonFiniteError, TrainConfig, train, validate_config
from lossaug.selection import make_candidates

TINY = dict(dataset="mini", train_size=128, model="cnn", width=4, epochs=2, batch_size=32, lr=0.05, device="cpu")


def _one_argument_flip(images):  # a kornia-style transform: draws from torch's global generator
    flip = torch.rand(len(images)) < 0.5
    return torch.where(flip.view(-1, 1, 1, 1), images.flip(-1), images)


def _noise(images, generator):  # an (images, generator) callable
    return images + torch.randint(0, 9, images.shape, generator=generator, dtype=images.dtype)


@pytest.mark.parametrize(
    "augment", [parse_augment("flip,crop:4,cutout:8"), _noise, _one_argument_flip], ids=["spec", "callable", "one-arg"]
)
def test_candidate_zero_under_extra_generator_is_the_single_candidate_draw(augment):
    images = torch.randint(0, 256, (6, 3, 12, 12), dtype=torch.uint8)
    single = make_candidates(images, augment, 1, generator=torch.Generator().manual_seed(5))
    main_stream, extra = torch.Generator().manual_seed(5), torch.Generator().manual_seed(6)
    many = make_candidates(images, augment, 4, generator=main_stream, extra_generator=extra)
    assert many.shape == (6, 4, 3, 12, 12)
    assert torch.equal(many[:, 0], single[:, 0])
    # both consumed the main stream identically: the next draws agree too
    after = torch.Generator().manual_seed(5)
    make_candidates(images, augment, 1, generator=after)
    assert torch.equal(torch.rand(3, generator=main_stream), torch.rand(3, generator=after))
    assert not torch.equal(many[:, 1], many[:, 0]) or not torch.equal(many[:, 2], many[:, 0])


def test_stretched_tail_keeps_the_trunk_then_ends_at_zero():
    trunk = Schedule(total_steps=100, warmup_steps=10, trunk_steps=100)
    branch = Schedule(total_steps=180, warmup_steps=10, trunk_steps=100, branch_step=50)
    assert [branch(s) for s in range(51)] == [trunk(s) for s in range(51)]
    assert branch(180) == 0.0 and branch(179) > 0 and trunk(100) == 0.0
    assert all(branch(s) >= branch(s + 1) for s in range(50, 180))
    same = Schedule(total_steps=100, warmup_steps=10, trunk_steps=100, branch_step=50)
    assert [same(s) for s in range(101)] == [trunk(s) for s in range(101)]


@pytest.mark.slow  # ~10 s: a trunk and four branches
def test_branches_share_the_trunk_bit_for_bit_and_the_baseline_branch_equals_the_plain_run(tmp_path):
    plain = train(TrainConfig(**TINY, method="baseline"))
    trunk_dir = tmp_path / "trunk"
    trunk = train(TrainConfig(**TINY, method="baseline", stop_at=0.5, out=str(trunk_dir)))
    info = json.loads((trunk_dir / "trunk.json").read_text())
    assert info["global_step"] == info["stop_step"] == 4 and not (trunk_dir / "final.json").exists()
    seen = {}
    for method, epochs in (("baseline", 2), ("proposed", 2), ("baseline", 3)):
        out = tmp_path / f"{method}-{epochs}"
        steps = []
        result = train(TrainConfig(**{**TINY, "epochs": epochs}, method=method, branch_from=str(trunk_dir),
                                   out=str(out)), on_step=lambda s, sel, steps=steps: steps.append(s))  # fmt: skip
        assert steps[0] == 5  # continues after the trunk's 4 steps
        seen[(method, epochs)] = result
        saved = json.loads((out / "config.json").read_text())
        assert saved["branched_from"]["global_step"] == 4
        lines = (out / "metrics.jsonl").read_text().splitlines()
        assert json.loads(lines[0]) == trunk.metrics[0]  # the shared first epoch, recorded once by the trunk
    for key, value in plain.model.state_dict().items():
        assert torch.equal(value, seen[("baseline", 2)].model.state_dict()[key]), key
    assert not torch.equal(plain.model.state_dict()["net.linear.weight"],
                           seen[("proposed", 2)].model.state_dict()["net.linear.weight"])  # fmt: skip
    lrs = [m["lr"] for m in seen[("baseline", 3)].metrics]
    assert lrs[0] == plain.metrics[0]["lr"] and lrs[-1] == pytest.approx(0.0, abs=1e-12)


def test_a_branch_must_match_its_trunk(tmp_path):
    trunk_dir = tmp_path / "trunk"
    train(TrainConfig(**TINY, method="baseline", stop_at=0.5, out=str(trunk_dir)))
    with pytest.raises(ValueError, match="trunk differs in lr: 0.05 -> 0.1"):
        train(TrainConfig(**{**TINY, "lr": 0.1}, branch_from=str(trunk_dir), out=str(tmp_path / "b")))


@pytest.mark.parametrize(
    "change,match",
    [(dict(lr=math.inf), "lr must be a finite number"), (dict(weight_decay=math.nan), "weight_decay must be a finite"),
     (dict(warmup_epochs=math.inf), "warmup_epochs must be a finite number"),
     (dict(warmup_epochs=math.nan), "warmup_epochs must be a finite number"),
     (dict(max_nonfinite=0), "max_nonfinite must be >= 1")],
)  # fmt: skip
def test_non_finite_hyperparameters_are_usage_errors(change, match):
    with pytest.raises(ValueError, match=match):
        validate_config(TrainConfig(**{**TINY, **change}))


def test_cli_rejects_infinite_lr_with_exit_2(tmp_path, capsys):
    assert main(["train", "--dataset", "mini", "--lr", "inf", "--out", str(tmp_path / "r")]) == 2
    assert "lr must be a finite number" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_an_update_that_blows_up_is_undone_and_the_saved_state_stays_finite(tmp_path):
    out = tmp_path / "run"
    with pytest.raises(NonFiniteError, match="non-finite"):
        train(TrainConfig(**{**TINY, "lr": 1e6}, out=str(out)))
    saved = load_checkpoint(out / "checkpoint.pt")
    tensors = [*saved["model"].values(), *[v for s in saved["optimizer"]["state"].values() for v in s.values()]]
    assert all(torch.isfinite(t).all() for t in tensors if t.is_floating_point())  # BatchNorm buffers included


def test_resuming_with_a_lower_lr_after_a_raise_works(tmp_path, monkeypatch):
    import lossaug.run.step as step_module

    real, calls = step_module.training_loss, []

    def loss(logits, labels, label_smoothing=0.0):
        calls.append(1)
        value = real(logits, labels, label_smoothing)
        return value * 1e30 * 1e30 if len(calls) == 3 else value  # an overflow at step 3

    monkeypatch.setattr(step_module, "training_loss", loss)
    out = tmp_path / "run"
    with pytest.raises(NonFiniteError, match="step 3"):
        train(TrainConfig(**TINY, out=str(out)))
    monkeypatch.setattr(step_module, "training_loss", real)
    with pytest.warns(UserWarning, match="lr: 0.05 -> 0.02"):
        result = train(TrainConfig(**{**TINY, "lr": 0.02}, out=str(out)), resume=True)
    assert [m["nonfinite_steps"] for m in result.metrics] == [0, 0] and math.isfinite(result.train_loss)


def test_skip_mode_stops_a_dead_run_instead_of_finishing_it():
    with pytest.raises(NonFiniteError, match="3 non-finite steps in a row .* --max-nonfinite 3"):
        train(TrainConfig(**{**TINY, "lr": 1e12}, on_nonfinite="skip", max_nonfinite=3))


def test_a_run_directory_is_never_overwritten_without_overwrite(tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["train", "--dataset", "mini", "--train-size", "64", "--model", "cnn", "--width", "2", "--batch-size",
            "32", "--epochs", "1", "--device", "cpu", "--out", str(out)]  # fmt: skip
    assert main(argv) == 0
    before = (out / "metrics.jsonl").read_text()
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "already holds a run" in err and "--resume" in err and "--overwrite" in err
    assert (out / "metrics.jsonl").read_text() == before and (out / "checkpoint.pt").exists()
    assert main([*argv, "--overwrite"]) == 0


def _folder(root, shade: int, size: int = 8):
    from PIL import Image

    for split in ("train", "test"):
        for index, cls in enumerate(("a", "b")):
            (root / split / cls).mkdir(parents=True, exist_ok=True)
            for i in range(4):
                Image.new("RGB", (size, size), (shade + 30 * index, 10 * i, 0)).save(root / split / cls / f"{i}.png")
    return root


def test_resuming_on_other_data_is_an_error_unless_allowed(tmp_path):
    first, other = _folder(tmp_path / "d1", 0), _folder(tmp_path / "d2", 100)
    base = dict(dataset="folder", model="cnn", width=2, batch_size=4, device="cpu", out=str(tmp_path / "run"))
    train(TrainConfig(**base, data=str(first), epochs=1))
    with pytest.raises(ValueError, match="the data differ .*--allow-data-change"):
        train(TrainConfig(**base, data=str(other), epochs=2), resume=True)
    with pytest.warns(UserWarning, match="on other data"):
        train(TrainConfig(**base, data=str(other), epochs=2, allow_data_change=True), resume=True)


def test_images_smaller_than_the_model_accepts_are_refused_at_load(tmp_path, capsys):
    _folder(tmp_path / "d", 0, size=4)
    argv = ["train", "--dataset", "folder", "--data", str(tmp_path / "d"), "--model", "cnn", "--width", "2",
            "--batch-size", "4", "--epochs", "1", "--device", "cpu", "--out", str(tmp_path / "r")]  # fmt: skip
    assert main(argv) == 2
    assert "cnn needs at least 8 px per side; pass --image-size 8" in capsys.readouterr().err


def test_channel_stats_accumulates_on_the_images_device():
    from lossaug.run.pipeline import channel_stats

    images = torch.randint(0, 256, (10, 3, 4, 4), dtype=torch.uint8)
    mean, std = channel_stats(images, chunk=3)
    x = images.double() / 255
    assert mean == pytest.approx(x.mean(dim=(0, 2, 3)).tolist())
    assert std == pytest.approx(x.std(dim=(0, 2, 3), correction=0).tolist())
    # On another device (meta stands in for CUDA here) the sums live beside the images: the only failure left is
    # reading numbers out of a meta tensor, not "Expected all tensors to be on the same device" (the bench bug).
    with pytest.raises((RuntimeError, NotImplementedError)) as error:
        channel_stats(images.to("meta"))
    assert "same device" not in str(error.value)


def test_a_bad_augmentation_spec_is_refused_before_any_data_loads(tmp_path, capsys, monkeypatch):
    import lossaug.run.pipeline as pipeline

    monkeypatch.setattr(pipeline, "load_for", lambda *a, **k: pytest.fail("data loaded first"))
    assert main(["train", "--dataset", "mini", "--augment", "crop:-5", "--out", str(tmp_path / "r")]) == 2
    assert "crop" in capsys.readouterr().err


def test_a_full_disk_while_writing_config_json_names_the_file_and_leaves_no_temporary(tmp_path, monkeypatch):
    import errno
    import os

    import lossaug.run.metadata as metadata

    def full(_fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(metadata.os, "fsync", full)
    out = tmp_path / "run"
    with pytest.raises(OSError, match=r"could not write .*config\.json: No space left on device"):
        train(TrainConfig(**TINY, out=str(out)))
    assert not list(out.glob("*.tmp"))


def _wav_tree(root, rate: int = 8000):
    import wave

    import numpy as np

    rng = np.random.default_rng(0)
    for split, count in (("train", 12), ("test", 4)):
        for label, freq in (("low", 300.0), ("high", 1800.0)):
            (root / split / label).mkdir(parents=True)
            for i in range(count):
                t = np.arange(int(rate * (0.3 + 0.05 * i % 0.2))) / rate
                clip = 0.4 * np.sin(2 * np.pi * freq * t) + 0.05 * rng.standard_normal(len(t))
                with wave.open(str(root / split / label / f"{i}.wav"), "wb") as handle:
                    handle.setnchannels(1)
                    handle.setsampwidth(2)
                    handle.setframerate(rate)
                    handle.writeframes((clip * 32767).astype("<i2").tobytes())
    return root


def test_lossaug_train_on_an_audio_folder_end_to_end(tmp_path, capsys):
    root = _wav_tree(tmp_path / "clips")
    out = tmp_path / "run"
    argv = ["train", "--dataset", "audio-folder", "--data", str(root), "--model", "audio_cnn", "--width", "4",
            "--batch-size", "8", "--epochs", "2", "--lr", "0.05", "--setting", "B", "--device", "cpu",
            "--out", str(out)]  # fmt: skip
    assert main(argv) == 0, capsys.readouterr().err
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert len(records) == 2 and records[-1]["entropy"] > 0 and 0 <= records[-1]["test_error"] <= 1
    meta = json.loads((out / "config.json").read_text())
    assert meta["config"]["dataset"] == "audio-folder"
    assert main(["train", "--resume", str(out), "--epochs", "3"]) == 0
    # lossaug show draws each clip's candidates as log-mel spectrograms with their scores.
    from lossaug.show import load_run, score_examples

    grid = score_examples(load_run(out), num_images=2, num_candidates=3, seed=0)
    assert grid.candidates.dtype == torch.int16 and grid.candidates.shape[:3] == (2, 3, 1)
    assert grid.scores.shape == (2, 3) and torch.allclose(grid.probs.sum(1), torch.ones(2))
    assert main(["show", str(out), "--out", str(tmp_path / "show.png"), "--images", "2"]) == 0
    assert (tmp_path / "show.png").stat().st_size > 0
    bad = ["train", "--dataset", "audio-folder", "--data", str(root), "--augment", "shift,flip", "--out",
           str(tmp_path / "bad")]  # fmt: skip
    assert main(bad) == 2
