"""Issue 32, data as people store it: folders with no split (``--test-fraction``), class folders searched
recursively, bad files refused all at once or skipped (``--skip-bad``), audio of any width and format through
soundfile, class imbalance (``--balance`` and its warning). Everything is built in ``tmp_path``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch
from PIL import Image

from lossaug.cli import main
from lossaug.data import (
    decode_audio,
    epoch_order,
    imbalance_warning,
    load_audio_folder,
    load_dataset,
    load_image_folder,
)
from lossaug.data.badfiles import MAX_LISTED
from lossaug.errors import InputError


def write_images(root: Path, counts: dict[str, int], nested: bool = True, seed: int = 0) -> Path:
    """``root/<class>/day{1,2}/<i>.png`` (or flat) 12x12 RGB images, ``counts[class]`` of each class."""
    rng = np.random.default_rng(seed)
    for name, count in counts.items():
        for i in range(count):
            folder = root / name / f"day{i % 2 + 1}" if nested else root / name
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(rng.integers(0, 256, (12, 12, 3), dtype=np.uint8)).save(folder / f"{i:03d}.png")
    return root


def write_clips(root: Path, counts: dict[str, int], rate: int = 8000, subtype: str = "PCM_16") -> Path:
    """``root/<class>/<i>.wav`` 0.05 s stereo noise clips at ``rate``."""
    rng = np.random.default_rng(1)
    for name, count in counts.items():
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            samples = (0.2 * rng.standard_normal((rate // 20, 2))).astype(np.float32)
            soundfile.write(root / name / f"{i:03d}.wav", samples, rate, subtype=subtype)
    return root


def truncated_jpeg(path: Path) -> Path:
    """A JPEG cut short: its header reads, its pixels do not."""
    Image.fromarray(np.full((12, 12, 3), 90, np.uint8)).save(path, format="JPEG")
    path.write_bytes(path.read_bytes()[:200])
    return path


# ---------------------------------------------------------------- no split needed


def test_unsplit_folder_is_split_per_class_seeded_and_the_same_every_run(tmp_path):
    root = write_images(tmp_path / "shapes", {"circle": 10, "square": 20})
    first = load_image_folder(root, test_fraction=0.2)
    again = load_image_folder(root, test_fraction=0.2)
    assert torch.equal(first.test.images, again.test.images) and torch.equal(first.train.images, again.train.images)
    assert first.split is not None
    assert first.split["test_counts"] == {"circle": 2, "square": 4}  # stratified: a fifth of each class
    assert first.split["train_counts"] == {"circle": 8, "square": 16}
    assert torch.bincount(first.test.labels).tolist() == [2, 4]
    other = load_image_folder(root, test_fraction=0.2, split_seed=1)
    assert other.split is not None and other.split["test_files_sha256"] != first.split["test_files_sha256"]
    # Every file is in exactly one split.
    assert len(first.train.labels) + len(first.test.labels) == 30


def test_unsplit_folder_asks_for_the_fraction_and_a_split_one_refuses_it(tmp_path):
    root = write_images(tmp_path / "shapes", {"circle": 4, "square": 4})
    with pytest.raises(InputError, match="no train/ and test/ folders: pass test_fraction"):
        load_image_folder(root)
    split = tmp_path / "split"
    write_images(split / "train", {"a": 2, "b": 2})
    write_images(split / "test", {"a": 1, "b": 1})
    with pytest.raises(InputError, match="is split already"):
        load_image_folder(split, test_fraction=0.2)
    with pytest.raises(InputError, match=r"test_fraction must be in \(0, 1\)"):
        load_image_folder(root, test_fraction=1.5)
    with pytest.raises(InputError, match="apply to folder data"):
        load_dataset("mini", test_fraction=0.2)


def test_unsplit_audio_folder_is_split_too(tmp_path):
    root = write_clips(tmp_path / "clips", {"hi": 5, "lo": 10})
    dataset = load_dataset("audio-folder", root, test_fraction=0.2, sample_rate=8000, clip_seconds=0.05)
    assert dataset.split is not None and dataset.split["test_counts"] == {"hi": 1, "lo": 2}
    assert dataset.train.waveforms.shape == (12, 1, 400)


# ---------------------------------------------------------------- class folders searched recursively


def test_class_folders_are_searched_recursively(tmp_path):
    root = tmp_path / "data"
    write_images(root / "train", {"circle": 4, "square": 4}, nested=True)
    write_images(root / "test", {"circle": 2, "square": 2}, nested=True)
    (root / "train" / "circle" / ".hidden").mkdir()
    truncated_jpeg(root / "train" / "circle" / ".hidden" / "x.jpg")  # hidden folders are not data
    dataset = load_image_folder(root)
    assert torch.bincount(dataset.train.labels).tolist() == [4, 4] and dataset.classes == ("circle", "square")


# ---------------------------------------------------------------- bad files


def test_bad_images_are_all_listed_then_and_n_more(tmp_path):
    root = write_images(tmp_path / "shapes", {"circle": 4, "square": 4})
    bad = [truncated_jpeg(root / "circle" / f"bad{i:02d}.jpg") for i in range(MAX_LISTED + 2)]
    with pytest.raises(InputError) as error:
        load_image_folder(root, test_fraction=0.25)
    message = str(error.value)
    assert "\n" not in message and f"{MAX_LISTED + 2} image files cannot be decoded" in message
    assert sum(str(path) in message for path in bad) == MAX_LISTED  # in load order: train, then test
    assert "and 2 more" in message and "--skip-bad" in message


def test_skip_bad_leaves_them_out_and_names_them(tmp_path):
    root = write_images(tmp_path / "shapes", {"circle": 6, "square": 6})
    bad = truncated_jpeg(root / "circle" / "day1" / "bad.jpg")
    messages: list[str] = []
    dataset = load_image_folder(root, test_fraction=0.25, skip_bad=True, log=messages.append)
    assert dataset.skipped == (str(bad),)
    assert len(dataset.train.labels) + len(dataset.test.labels) == 12
    assert any("skipped 1 image file" in m and str(bad) in m for m in messages)


def test_bad_wavs_refused_or_skipped(tmp_path):
    root = write_clips(tmp_path / "clips", {"hi": 4, "lo": 4})
    (root / "lo" / "zz.wav").write_bytes(b"RIFF\x10\x00\x00\x00WAVEjunk")
    with pytest.raises(InputError, match=r"1 audio file cannot be decoded: .*zz\.wav"):
        load_audio_folder(root, test_fraction=0.25)
    dataset = load_audio_folder(root, test_fraction=0.25, skip_bad=True)
    assert dataset.skipped == (str(root / "lo" / "zz.wav"),)
    assert len(dataset.train.labels) + len(dataset.test.labels) == 8


def test_cli_refuses_bad_files_then_skips_them_into_the_run_directory(tmp_path, capsys):
    root = write_images(tmp_path / "shapes", {"circle": 10, "square": 10})
    bad = truncated_jpeg(root / "square" / "day2" / "broken.jpg")
    data = ["--dataset", "folder", "--data", str(root), "--test-fraction", "0.2", "--cache-dir", str(tmp_path / "c")]
    common = ["train", *data, "--model", "cnn", "--width", "4", "--epochs", "1", "--batch-size", "8"]
    refused = tmp_path / "refused"
    assert main([*common, "--out", str(refused)]) == 2
    assert str(bad) in capsys.readouterr().err and not (refused / "config.json").exists()
    out = tmp_path / "run"
    assert main([*common, "--skip-bad", "--out", str(out)]) == 0
    logged = capsys.readouterr()
    assert "train/test per class: circle 8/2, square 8/2" in logged.out + logged.err
    assert (out / "skipped_files.txt").read_text() == f"{bad}\n"
    recorded = json.loads((out / "config.json").read_text())
    assert recorded["config"]["test_fraction"] == 0.2 and recorded["config"]["skip_bad"] is True
    assert recorded["resolved"]["split"]["test_counts"] == {"circle": 2, "square": 2}
    assert recorded["resolved"]["skipped_files"] == [str(bad)]
    fingerprint = torch.load(out / "checkpoint.pt", weights_only=False)["data_fingerprint"]
    assert fingerprint["split"]["test_files_sha256"] == recorded["resolved"]["split"]["test_files_sha256"]


# ---------------------------------------------------------------- any WAV, compressed formats


@pytest.mark.parametrize(
    "suffix,fmt,subtype,atol",
    [
        (".wav", "WAV", "PCM_U8", 1 / 64),
        (".wav", "WAV", "PCM_16", 1e-4),
        (".wav", "WAVEX", "PCM_24", 1e-6),  # sox's 24-bit output: WAVE_FORMAT_EXTENSIBLE
        (".wav", "WAV", "PCM_32", 1e-6),
        (".wav", "WAV", "FLOAT", 1e-7),
        (".wav", "WAV", "DOUBLE", 1e-7),
        (".flac", "FLAC", "PCM_24", 1e-6),
        (".ogg", "OGG", "VORBIS", None),  # lossy: only the rate and the length are checked
    ],
)
def test_decode_audio_reads_every_width_and_common_formats(tmp_path, suffix, fmt, subtype, atol):
    rate = 22050
    t = np.arange(rate // 10) / rate
    stereo = np.stack([0.5 * np.sin(2 * np.pi * 440 * t), 0.25 * np.sin(2 * np.pi * 660 * t)], axis=1)
    path = tmp_path / f"clip{suffix}"
    soundfile.write(path, stereo, rate, format=fmt, subtype=subtype)
    samples, got_rate = decode_audio(path)
    assert got_rate == rate and samples.dtype == np.float32 and samples.shape == (len(t),)
    if atol is not None:
        assert np.allclose(samples, stereo.mean(axis=1), atol=atol)
    samples_from_bytes, _ = decode_audio(path.read_bytes(), "bytes")
    assert np.array_equal(samples, samples_from_bytes)


def test_audio_folder_of_24_bit_extensible_44k_stereo(tmp_path):
    root = write_clips(tmp_path / "clips", {"a": 3, "b": 3}, rate=44100, subtype="PCM_24")
    dataset = load_audio_folder(root, test_fraction=0.34, sample_rate=16000)
    assert dataset.sample_rate == 16000 and dataset.train.waveforms.shape[1] == 1


# ---------------------------------------------------------------- class imbalance


def test_epoch_order_unbalanced_is_the_old_permutation_and_balanced_evens_the_classes():
    labels = torch.tensor([0] * 90 + [1] * 10)
    plain = epoch_order(labels, False, torch.Generator().manual_seed(3))
    assert torch.equal(plain, torch.randperm(100, generator=torch.Generator().manual_seed(3)))
    drawn = torch.cat([epoch_order(labels, True, torch.Generator().manual_seed(s)) for s in range(50)])
    share = labels[drawn].float().mean().item()  # the minority class's share of the draws
    assert abs(share - 0.5) < 0.03 and len(drawn) == 5000
    again = epoch_order(labels, True, torch.Generator().manual_seed(0))
    assert torch.equal(again, epoch_order(labels, True, torch.Generator().manual_seed(0)))


def test_imbalance_warning_names_the_small_classes():
    labels = torch.tensor([0] * 100 + [1] * 9 + [2] * 10)
    message = imbalance_warning(labels, ("big", "tiny", "ten"))
    assert message is not None and "'tiny' (9)" in message and "'ten'" not in message and "--balance" in message
    assert imbalance_warning(torch.tensor([0] * 10 + [1] * 10), ("a", "b")) is None


def test_cli_balance_is_recorded_and_the_imbalance_warned(tmp_path, capsys):
    root = write_images(tmp_path / "shapes", {"many": 40, "few": 3})
    data = ["--dataset", "folder", "--data", str(root), "--test-fraction", "0.34", "--cache-dir", str(tmp_path / "c")]
    common = ["train", *data, "--model", "cnn", "--width", "4", "--epochs", "1", "--batch-size", "8"]
    assert main([*common, "--out", str(tmp_path / "plain")]) == 0
    assert "warning: class imbalance: 'few' (2) has fewer than a tenth" in capsys.readouterr().err
    assert main([*common, "--balance", "--out", str(tmp_path / "balanced")]) == 0
    recorded = json.loads((tmp_path / "balanced" / "config.json").read_text())
    assert recorded["config"]["balance"] is True
    assert json.loads((tmp_path / "plain" / "config.json").read_text())["config"]["balance"] is False
