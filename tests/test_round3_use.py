"""Issue 31, the commands that use a trained run (``predict``, ``evaluate``, ``export``, ``show``, ``report
--per-class``): nothing replaced, no code imported without asking, no bad weights or metadata used, provenance that
describes the exported weights, an exported module checked against the model, and one line for every bad input."""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from lossaug.cli import main
from lossaug.use import export_run, load_trained

TINY = ["--dataset", "mini", "--train-size", "64", "--epochs", "1", "--batch-size", "16", "--device", "cpu"]

FACTORIES = """
import pathlib
import torch
from torch import nn

pathlib.Path("imported.txt").write_text("ran")  # the module's own code, run on import


class Net(nn.Module):
    def __init__(self, num_classes, in_channels, branch=False):
        super().__init__()
        self.fc = nn.Linear(in_channels, num_classes)
        self.branch = branch

    def forward(self, x):
        h = x.mean(dim=(2, 3))
        if self.branch and bool(x.mean() > 0):  # branches on the input's values
            return -3 * self.fc(h)
        return self.fc(h)


def make(num_classes, in_channels):
    return Net(num_classes, in_channels)


def branchy(num_classes, in_channels):
    return Net(num_classes, in_channels, branch=True)
"""


@pytest.fixture(scope="module")
def mini_run(tmp_path_factory) -> Path:
    """A finished tiny run (``cnn``, width 4, one epoch of 64 mini images)."""
    out = tmp_path_factory.mktemp("mini") / "run"
    assert main(["train", *TINY, "--model", "cnn", "--width", "4", "--out", str(out)]) == 0
    return out


def copy_run(run: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(run, tmp_path / "run"))


def error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert err, "no message"
    return err[-1]


# 7: export never replaces a run file or any existing file ---------------------------------------------------------


@pytest.mark.parametrize("name", ["checkpoint.pt", "config.pt", "final.pt", "checkpoint.prev.pt", "labels.pt"])
def test_export_never_replaces_a_run_file_or_an_existing_file(mini_run, tmp_path, capsys, name):
    run = copy_run(mini_run, tmp_path)
    (run / "labels.json").write_text('{"mine": 1}')
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    assert main(["export", str(run), "--out", str(run / name)]) == 2
    line = error_line(capsys)
    assert "--out" in line and ("exists" in line or "the run" in line)
    assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()} == before


def test_export_into_a_fresh_name_still_works_and_a_second_export_is_refused(mini_run, tmp_path, capsys):
    out = tmp_path / "model.pt"
    assert main(["export", str(mini_run), "--out", str(out)]) == 0
    assert out.is_file() and (tmp_path / "model.json").is_file()
    assert main(["export", str(mini_run), "--out", str(out)]) == 2
    assert "exists" in error_line(capsys)
    assert not list(tmp_path.glob("*.tmp*"))


# 15: --out model.json would put the metadata over the module -------------------------------------------------------


def test_export_out_json_is_refused(mini_run, tmp_path, capsys):
    assert main(["export", str(mini_run), "--out", str(tmp_path / "model.json")]) == 2
    assert ".json" in error_line(capsys)
    assert not (tmp_path / "model.json").exists()


# 8: predict imports a checkpoint's module only when asked -----------------------------------------------------------


@pytest.fixture
def factory_run(tmp_path, monkeypatch):
    """A run of ``--model evilnet:make`` made in ``tmp_path`` (the module beside it), the module then forgotten."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    (tmp_path / "evilnet.py").write_text(FACTORIES)
    assert main(["train", *TINY, "--model", "evilnet:make", "--out", "run"]) == 0
    sys.modules.pop("evilnet", None)
    (tmp_path / "imported.txt").unlink()
    yield tmp_path / "run"
    sys.modules.pop("evilnet", None)


def test_predict_never_imports_a_checkpoints_module_implicitly(factory_run, tmp_path, capsys):
    image = tmp_path / "x.png"
    from PIL import Image

    Image.new("RGB", (32, 32), (10, 200, 30)).save(image)
    for command in (["predict", str(factory_run), str(image)], ["export", str(factory_run), "--out", "m.pt"]):
        assert main(command) == 2
        line = error_line(capsys)
        assert "evilnet" in line and "--trust-code evilnet" in line
        assert not (tmp_path / "imported.txt").exists()
    with pytest.raises(ValueError, match="trust_code"):
        load_trained(factory_run)
    assert main(["predict", str(factory_run), str(image), "--trust-code", "othermod"]) == 2
    assert not (tmp_path / "imported.txt").exists()
    assert main(["predict", str(factory_run), str(image), "--trust-code", "evilnet"]) == 0
    captured = capsys.readouterr()
    assert "importing evilnet" in captured.err and str(tmp_path / "evilnet.py") in captured.err
    assert (tmp_path / "imported.txt").exists()


# 14: non-finite or integer weights are refused ---------------------------------------------------------------------


@pytest.mark.parametrize("damage", ["nan", "inf", "int"])
def test_non_finite_or_integer_weights_are_refused(mini_run, tmp_path, capsys, damage):
    run = copy_run(mini_run, tmp_path)
    payload = torch.load(run / "checkpoint.pt", weights_only=True)
    name = next(k for k, v in payload["model"].items() if v.is_floating_point() and k.endswith("weight"))
    tensor = payload["model"][name]
    if damage == "int":
        payload["model"][name] = tensor.round().to(torch.int64)
    else:
        tensor.view(-1)[0] = float(damage)
    torch.save(payload, run / "checkpoint.pt")
    (tmp_path / "d" / "a").mkdir(parents=True)
    from PIL import Image

    Image.new("RGB", (32, 32)).save(tmp_path / "d" / "a" / "0.png")
    for command in (
        ["predict", str(run), str(tmp_path / "d" / "a" / "0.png")],
        ["evaluate", str(run), "--data", str(tmp_path / "d")],
        ["export", str(run), "--out", str(tmp_path / "m.pt")],
    ):
        assert main(command) == 2
        line = error_line(capsys)
        assert str(run / "checkpoint.pt") in line and name in line
    assert not (tmp_path / "m.pt").exists()


# 23: a FIFO named checkpoint.pt does not hang ------------------------------------------------------------------------


def test_a_fifo_named_checkpoint_is_not_read(mini_run, tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    os.mkfifo(run / "checkpoint.pt")
    shutil.copy(mini_run / "config.json", run / "config.json")
    assert main(["predict", str(run), str(tmp_path)]) == 2  # would block forever in open() before the fix
    assert "regular file" in capsys.readouterr().err
    assert main(["predict", str(run / "checkpoint.pt"), str(tmp_path)]) == 2
    assert "regular file" in error_line(capsys)


# 11: provenance describes the exported weights; a run still training is said so --------------------------------


def test_export_provenance_describes_the_exported_weights(mini_run, tmp_path, capsys):
    assert main(["export", str(mini_run), "--out", str(tmp_path / "a.pt")]) == 0
    final = json.loads((mini_run / "final.json").read_text())
    provenance = json.loads((tmp_path / "a.json").read_text())["provenance"]
    assert provenance["test_error"] == final["test_error"]
    # the previous checkpoint exported (the newest unreadable): not final.json's weights
    run = copy_run(mini_run, tmp_path)
    payload = torch.load(run / "checkpoint.pt", weights_only=True)
    payload["position"] = {**payload["position"], "step": 2, "test_error": None}
    payload["global_step"] = 2
    torch.save(payload, run / "checkpoint.prev.pt")
    (run / "checkpoint.pt").write_bytes(b"cut short")
    with pytest.warns(UserWarning, match="test error of these weights is unknown"):
        exported = export_run(load_trained(run), tmp_path / "b.pt")
    assert exported.metadata["provenance"]["test_error"] is None
    assert "unknown" in exported.metadata["provenance"]["test_error_note"]


def test_predict_and_export_on_a_run_still_training_say_so(mini_run, tmp_path):
    from lossaug.run.rundir import RunLock

    run = copy_run(mini_run, tmp_path)
    with RunLock(run), pytest.warns(UserWarning, match="still training"):
        load_trained(run)


# 12: an export that does not compute the model's function is refused -------------------------------------------


def test_export_of_a_value_branching_network_is_refused(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    (tmp_path / "evilnet.py").write_text(FACTORIES)
    try:
        assert main(["train", *TINY, "--model", "evilnet:branchy", "--out", "run"]) == 0
        assert main(["export", "run", "--out", "m.pt", "--trust-code", "evilnet"]) == 2
        assert "differ" in error_line(capsys)
        assert not (tmp_path / "m.pt").exists()
    finally:
        sys.modules.pop("evilnet", None)


# 20 and 25: an unwritable --out, or one under a file, is one line -------------------------------------------------


@pytest.mark.parametrize("where", ["proc", "read-only", "under-a-file"])
def test_export_out_that_cannot_be_written_is_one_line(mini_run, tmp_path, capsys, monkeypatch, where):
    if where == "proc":
        out = Path("/proc/x.pt")
    elif where == "read-only":
        folder = tmp_path / "ro"
        folder.mkdir()
        folder.chmod(0o500)
        if os.access(folder, os.W_OK):  # root may write anywhere: the folder refuses as a read-only one would

            def refuse(*args, **kwargs):
                raise PermissionError(13, "Permission denied")

            monkeypatch.setattr("lossaug.use.outputs.tempfile.mkstemp", refuse)
        out = folder / "model.pt"
    else:
        (tmp_path / "notes.txt").write_text("mine")
        out = tmp_path / "notes.txt" / "model.pt"
    assert main(["export", str(mini_run), "--out", str(out)]) == 2
    line = error_line(capsys)
    assert line.startswith("lossaug: ") and "--out" in line and "RuntimeError" not in line
    if where == "under-a-file":
        assert "notes.txt is a file, not a folder" in line
        assert (tmp_path / "notes.txt").read_text() == "mine"


# 21: edited checkpoint metadata is one line --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "edit",
    [
        lambda p: p["inputs"].update(extra=1),
        lambda p: p.update(inputs="image 3x32x32"),
        lambda p: p["inputs"].update(height=10**9),
        lambda p: p["inputs"].update(width=-3),
        lambda p: p["config"].update(width="abc"),
    ],
    ids=["extra-key", "string", "huge-height", "negative-width", "width-abc"],
)
def test_edited_checkpoint_metadata_is_one_line(mini_run, tmp_path, capsys, edit):
    run = copy_run(mini_run, tmp_path)
    payload = torch.load(run / "checkpoint.pt", weights_only=True)
    edit(payload)
    torch.save(payload, run / "checkpoint.pt")
    from PIL import Image

    Image.new("RGB", (32, 32)).save(tmp_path / "x.png")
    for command in (
        ["predict", str(run), str(tmp_path / "x.png")],
        ["export", str(run), "--out", str(tmp_path / "m.pt")],
    ):
        assert main(command) == 2
        line = error_line(capsys)
        assert line.startswith("lossaug: ") and str(run / "checkpoint.pt") in line


# 25: a file that is not a run given as RUN ----------------------------------------------------------------------


@pytest.mark.parametrize("given", ["config.json", "png", "/dev/zero"])
def test_a_file_that_is_not_a_checkpoint_given_as_run(mini_run, tmp_path, capsys, given):
    from PIL import Image

    Image.new("RGB", (32, 32)).save(tmp_path / "x.png")
    path = {"config.json": str(mini_run / "config.json"), "png": str(tmp_path / "x.png")}.get(given, given)
    assert main(["predict", path, str(tmp_path / "x.png")]) == 2
    line = error_line(capsys)
    assert "pickled" not in line and path in line
    assert "not a checkpoint" in line or "not a regular file" in line


# 18 and 24: audio runs ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def audio_run(tmp_path_factory) -> Path:
    """A run on 8 kHz mono tones, ``low`` and ``high``."""
    from test_use import wav_tree

    tmp = tmp_path_factory.mktemp("audio")
    root, out = wav_tree(tmp / "tones", rate=8000, channels=1, train=4, test=2), tmp / "run"
    options = ["--width", "2", "--epochs", "1", "--batch-size", "4", "--device", "cpu"]
    argv = ["train", "--dataset", "audio-folder", "--data", str(root), *options, "--out", str(out)]
    assert main(argv) == 0
    return out


def write_wav(path: Path, rate: int, samples: int) -> None:
    import wave

    with wave.open(str(path), "wb") as handle:
        handle.setnchannels(1)
        handle.setsampwidth(2)
        handle.setframerate(rate)
        handle.writeframes(np.zeros(samples, dtype="<i2").tobytes())


def test_a_wav_claiming_an_absurd_rate_is_refused_before_resampling(audio_run, tmp_path, capsys, monkeypatch):
    write_wav(tmp_path / "good.wav", 8000, 800)
    write_wav(tmp_path / "one_hz.wav", 1, 2000)  # would resample to 16 M samples at 8 kHz
    write_wav(tmp_path / "long.wav", 4000, 6000)
    import lossaug.use.inputs as inputs

    monkeypatch.setattr(inputs, "MAX_RESAMPLED", 10_000)  # the long file's 12 000 samples at 8 kHz exceed it
    assert main(["predict", str(audio_run), str(tmp_path)]) == 1
    captured = capsys.readouterr()
    assert "good.wav" in captured.out and "one_hz.wav" not in captured.out and "long.wav" not in captured.out
    lines = captured.err.strip().splitlines()
    assert any("one_hz.wav" in line and "1 Hz" in line for line in lines)
    assert any("long.wav" in line and "10000" in line for line in lines)


def test_exported_audio_module_takes_empty_batches_and_checks_its_range(audio_run, tmp_path):
    out = tmp_path / "m.pt"
    exported = export_run(load_trained(audio_run), out, format="torchscript")
    module = torch.jit.load(str(out))
    samples = exported.metadata["inputs"]["clip_samples"]
    assert module(torch.zeros((0, 1, samples), dtype=torch.int16)).shape == (0, 2)
    assert module(torch.zeros((0, 1, samples))).shape == (0, 2)
    assert module(torch.full((2, 1, samples), 0.5)).shape == (2, 2)
    for bad in (torch.full((1, 1, samples), 1000.0), torch.full((1, 1, samples), float("nan"))):
        with pytest.raises(Exception, match=r"\[-1, 1\]"):
            module(bad)


# 19: report --per-class reads final.json checked ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        '{"test_error": 0.5, "per_class',
        '{"per_class_test_error": [1, 2]}',
        '{"per_class_test_error": {"cat": "x"}}',
        '["a"]',
        '{"per_class_test_error": {"cat": 2.5}}',
    ],
    ids=["cut-short", "list", "string-value", "not-an-object", "out-of-range"],
)
def test_report_per_class_reads_final_json_checked(mini_run, tmp_path, capsys, text):
    run = copy_run(mini_run, tmp_path)
    (run / "final.json").write_text(text)
    assert main(["report", str(run), "--per-class", "--out", str(tmp_path / "r.png")]) == 2
    line = error_line(capsys)
    assert line.startswith("lossaug: ") and str(run / "final.json") in line


# 25: the messages of the use commands --------------------------------------------------------------------------------


def test_a_file_or_folder_of_the_other_kind_says_what_the_run_takes(audio_run, mini_run, tmp_path, capsys):
    from PIL import Image

    (tmp_path / "pics").mkdir()
    Image.new("RGB", (32, 32)).save(tmp_path / "pics" / "x.png")
    write_wav(tmp_path / "x.wav", 8000, 800)
    assert main(["predict", str(audio_run), str(tmp_path / "pics" / "x.png")]) == 1
    assert "the run takes audio" in error_line(capsys)
    assert main(["predict", str(mini_run), str(tmp_path / "x.wav")]) == 1
    assert "the run takes images" in error_line(capsys)
    assert main(["predict", str(audio_run), str(tmp_path / "pics")]) == 2
    line = error_line(capsys)
    assert "the run takes audio" in line and "image" in line


def zip_with(path: Path, members: dict[str, bytes], links: dict[str, str]) -> Path:
    import stat
    import zipfile

    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
        for name, target in links.items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            archive.writestr(info, target)
    return path


def png_bytes(color=(200, 10, 10)) -> bytes:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (32, 32), color).save(buffer, format="PNG")
    return buffer.getvalue()


def test_evaluate_archives_symlinks_corruption_and_a_wrapping_folder(mini_run, tmp_path, capsys):
    data = zip_with(tmp_path / "d.zip", {"test/cat/0.png": png_bytes()}, {"test/dog/1.png": "../../etc/passwd"})
    assert main(["evaluate", str(mini_run), "--data", str(data), "--out", str(tmp_path / "c.png")]) == 2
    line = error_line(capsys)
    assert "test/dog/1.png" in line and "symbolic link" in line and "BytesIO" not in line
    (tmp_path / "bad.zip").write_bytes(b"not an archive at all" * 10)
    assert main(["evaluate", str(mini_run), "--data", str(tmp_path / "bad.zip")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "bad.zip" in err[0]
    for name in ("cat", "dog"):  # one folder wrapping <class>/<file>, as the README allows
        (tmp_path / "wrap" / "mydata" / name).mkdir(parents=True)
        (tmp_path / "wrap" / "mydata" / name / "0.png").write_bytes(png_bytes())
    assert (
        main(["evaluate", str(mini_run), "--data", str(tmp_path / "wrap"), "--json", "--out", str(tmp_path / "w.png")])
        == 0
    )
    assert json.loads(capsys.readouterr().out)["num_examples"] == 2


def test_show_on_a_run_with_two_test_images(tmp_path, capsys):
    from test_use import image_tree

    root = image_tree(tmp_path / "shapes", train=4, test=1)
    options = ["--model", "cnn", "--width", "2", "--epochs", "1", "--batch-size", "4", "--device", "cpu"]
    argv = ["train", "--dataset", "folder", "--data", str(root), *options, "--out", str(tmp_path / "run")]
    assert main(argv) == 0
    assert main(["show", str(tmp_path / "run"), "--out", str(tmp_path / "c.png")]) == 0  # the default, clamped
    assert main(["show", str(tmp_path / "run"), "--images", "6", "--out", str(tmp_path / "d.png")]) == 2
    assert "--images" in error_line(capsys)


def test_decompression_bomb_warning_names_the_file(mini_run, tmp_path, monkeypatch):
    import warnings

    from PIL import Image

    from lossaug.use import predict

    Image.new("RGB", (32, 32)).save(tmp_path / "big.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 600)  # 1024 pixels: more than this, less than twice
    run = load_trained(mini_run)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = predict(run, [tmp_path / "big.png"])
    assert len(result.predictions) == 1
    assert any("big.png" in str(w.message) and "decompression" in str(w.message).lower() for w in caught)


def test_show_never_imports_a_checkpoints_module_implicitly(factory_run, tmp_path, capsys):
    assert main(["show", str(factory_run), "--out", str(tmp_path / "s.png")]) == 2
    assert "--trust-code evilnet" in error_line(capsys)
    assert not (tmp_path / "imported.txt").exists()
    assert main(["show", str(factory_run), "--out", str(tmp_path / "s.png"), "--trust-code", "evilnet"]) == 0
    assert (tmp_path / "imported.txt").exists()


def test_exported_files_are_readable_as_any_new_file(tmp_path):
    from lossaug.use.outputs import write_new_file

    previous = os.umask(0o022)
    try:
        write_new_file("--out", b"x", tmp_path / "model.pt2")
    finally:
        os.umask(previous)
    assert (tmp_path / "model.pt2").stat().st_mode & 0o777 == 0o644  # not mkstemp's private 0600
