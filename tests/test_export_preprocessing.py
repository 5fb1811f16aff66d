"""Issue 32, an export that carries its preprocessing: a file read with soundfile and prepared by README's
torch-only ``read_clip`` (model.json's ``preprocessing``) gives ``lossaug predict``'s probabilities through the
exported module, in a process where ``import lossaug`` fails; ``--format export`` (torch.export, the default, with
a TorchScript fallback), ``torchscript`` and ``onnx`` (skipped without onnxruntime), each checked against the
model on held-out inputs."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch

from lossaug.cli import main
from lossaug.errors import InputError
from lossaug.use import export_run, load_trained, predict
from lossaug.use.formats import FORMATS

README = Path(__file__).resolve().parents[1] / "README.md"
FAST = ["--epochs", "1", "--batch-size", "4", "--candidates", "2", "--lr", "0.05", "--device", "cpu"]

NO_LOSSAUG = """
import json, sys
sys.modules["lossaug"] = None  # lossaug cannot be imported here
try:
    import lossaug
except ImportError:
    pass
else:
    raise SystemExit("lossaug was importable")
import torch
"""

# model.json says how to load the module and what goes in; read_clip (README) makes that input from the file.
PREDICT_FILES = """
meta = json.load(open(sys.argv[2]))
fmt = meta["format"]
if fmt == "lossaug-export/1":
    model = torch.export.load(sys.argv[1]).module()
elif fmt == "lossaug-torchscript/1":
    model = torch.jit.load(sys.argv[1])
else:
    import onnxruntime
    session = onnxruntime.InferenceSession(sys.argv[1])
    model = lambda x: torch.from_numpy(session.run(["logits"], {"inputs": x.numpy()})[0])
rate, length = meta["inputs"]["sample_rate"], meta["inputs"]["clip_samples"]
probs = {path: model(read_clip(path, rate, length)).softmax(1)[0].tolist() for path in sys.argv[3:]}
print(json.dumps(probs))
"""


def readme_read_clip() -> str:
    """The README's Export reference, as written there."""
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    (block,) = [b for b in blocks if "def read_clip" in b]
    assert len(block.split("def read_clip")[1].strip().splitlines()) <= 20
    return block


def write_tone(path: Path, rate: int, channels: int, seconds: float, freq: float) -> Path:
    rng = np.random.default_rng(rate + channels)
    t = np.arange(int(rate * seconds)) / rate
    left = 0.4 * np.sin(2 * np.pi * freq * t) + 0.05 * rng.standard_normal(len(t))
    samples = np.stack([left, 0.3 * np.roll(left, 7)][:channels], axis=1)
    path.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(path, samples, rate, subtype="PCM_16")
    return path


@pytest.fixture(scope="module")
def audio_run(tmp_path_factory) -> Path:
    """A tiny run on 16 kHz mono clips of two classes (low and high tones)."""
    tmp = tmp_path_factory.mktemp("audio32")
    for split, count in (("train", 6), ("test", 2)):
        for label, freq in (("low", 300.0), ("high", 3000.0)):
            for i in range(count):
                write_tone(tmp / "data" / split / label / f"{i}.wav", 16000, 1, 0.1 + 0.01 * i, freq + 40 * i)
    out = tmp / "run"
    argv = ["train", "--dataset", "audio-folder", "--data", str(tmp / "data"), "--width", "2", *FAST, "--out"]
    assert main([*argv, str(out)]) == 0
    return out


def exported_probs(module: Path, files: list[Path], tmp_path: Path) -> dict[str, list[float]]:
    script = NO_LOSSAUG + readme_read_clip() + PREDICT_FILES
    argv = [sys.executable, "-I", "-c", script, str(module), str(module.with_suffix(".json")), *map(str, files)]
    done = subprocess.run(argv, check=True, cwd=tmp_path, capture_output=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("format", ["export", "torchscript", "onnx"])
def test_a_raw_file_gives_predicts_probabilities_without_lossaug(audio_run, tmp_path, format):
    if format == "onnx":
        pytest.importorskip("onnxruntime")
        pytest.importorskip("onnxscript")
    files = [
        write_tone(tmp_path / "stereo48k.wav", 48000, 2, 0.13, 2800.0),  # longer than the clip: cropped
        write_tone(tmp_path / "mono44k.wav", 44100, 1, 0.05, 350.0),  # shorter: zero-padded
    ]
    module = tmp_path / f"model.{format}"
    assert main(["export", str(audio_run), "--out", str(module), "--format", format]) == 0
    run = load_trained(audio_run)
    expected = {p.path: dict(p.top) for p in predict(run, [str(f) for f in files], top=len(run.classes)).predictions}
    got = exported_probs(module, files, tmp_path)
    assert set(got) == set(expected)
    for path, probs in got.items():
        assert np.allclose(probs, [expected[path][name] for name in run.classes], rtol=0, atol=1e-5), path


def test_export_is_the_default_format_and_model_json_says_how_to_load_and_prepare(audio_run, tmp_path, capsys):
    assert main(["export", str(audio_run), "--out", str(tmp_path / "model.pt2")]) == 0
    assert "torch.export.load" in capsys.readouterr().out
    meta = json.loads((tmp_path / "model.json").read_text())
    assert meta["format"] == "lossaug-export/1" and meta["load"] == "torch.export.load(FILE).module()"
    prep = meta["preprocessing"]
    assert prep["resample"]["to_rate"] == 16000 and prep["fit"]["clip_samples"] == meta["inputs"]["clip_samples"]
    module = torch.export.load(str(tmp_path / "model.pt2")).module()
    samples = meta["inputs"]["clip_samples"]
    assert module(torch.zeros((0, 1, samples), dtype=torch.int16)).shape == (0, 2)  # an empty batch
    assert module(torch.zeros((5, 1, samples), dtype=torch.int16)).shape == (5, 2)  # any batch size
    with pytest.raises(Exception, match="(?i)dtype"):  # int16 only: no float on another scale
        module(torch.zeros((1, 1, samples)))
    with pytest.raises(Exception):  # noqa: B017 - torch.export's own shape guard
        module(torch.zeros((1, 1, samples + 1), dtype=torch.int16))


def test_a_network_torch_export_cannot_capture_falls_back_to_torchscript_with_a_notice(
    audio_run, tmp_path, monkeypatch
):
    def cannot(*args, **kwargs):
        raise RuntimeError("data-dependent branch")

    monkeypatch.setattr(torch.export, "export", cannot)
    with pytest.warns(UserWarning, match="torch.export.*writing TorchScript instead"):
        exported = export_run(load_trained(audio_run), tmp_path / "m.pt")
    assert exported.format == "torchscript" and exported.metadata["format"] == "lossaug-torchscript/1"
    with pytest.raises(InputError, match="to torch.export: RuntimeError: data-dependent branch"):
        export_run(load_trained(audio_run), tmp_path / "n.pt2", format="export")  # asked for: refused, one line
    assert not (tmp_path / "n.pt2").exists()


@pytest.mark.parametrize("format", ["export", "torchscript", "onnx"])
def test_every_format_is_checked_against_the_model(audio_run, tmp_path, monkeypatch, format):
    if format == "onnx":
        pytest.importorskip("onnxruntime")
        pytest.importorskip("onnxscript")
    row = FORMATS[format]

    def load_off_by_one(data):
        module = row.load(data)
        return lambda inputs: module(inputs) + 1.0

    monkeypatch.setitem(
        FORMATS, format, type(row)(row.tag, row.write, load_off_by_one, row.loads_with, row.takes_float)
    )
    with pytest.raises(InputError, match="differ from the model's"):
        export_run(load_trained(audio_run), tmp_path / "m.bin", format=format)
    assert not (tmp_path / "m.bin").exists() and not (tmp_path / "m.json").exists()


def test_onnx_without_its_packages_is_refused_in_one_line(audio_run, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "onnx", None)
    assert main(["export", str(audio_run), "--out", str(tmp_path / "m.onnx"), "--format", "onnx"]) == 2
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert "onnx" in line and "pip install 'lossaug[onnx]'" in line
    assert not (tmp_path / "m.onnx").exists()


READ_IMAGE = """
import numpy as np
from PIL import Image
meta = json.load(open(sys.argv[2]))
model = torch.export.load(sys.argv[1]).module()
spec = meta["inputs"]
image = Image.open(sys.argv[3]).convert("RGB" if spec["channels"] == 3 else "L")
if image.size != (spec["width"], spec["height"]):
    image = image.resize((spec["width"], spec["height"]), Image.Resampling.BILINEAR)
pixels = torch.from_numpy(np.asarray(image).reshape(spec["height"], spec["width"], -1).copy()).permute(2, 0, 1)
print(json.dumps(model(pixels[None]).softmax(1)[0].tolist()))
"""


def test_an_image_of_another_size_gives_predicts_probabilities_without_lossaug(tmp_path):
    from PIL import Image

    run_dir = tmp_path / "run"
    argv = ["train", "--dataset", "mini", "--train-size", "64", "--model", "cnn", "--width", "4", *FAST]
    assert main([*argv, "--out", str(run_dir)]) == 0
    picture = tmp_path / "gray.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (20, 45), dtype=np.uint8)).save(picture)
    assert main(["export", str(run_dir), "--out", str(tmp_path / "model.pt2")]) == 0
    run = load_trained(run_dir)
    (prediction,) = predict(run, [str(picture)], top=len(run.classes)).predictions
    argv = [sys.executable, "-I", "-c", NO_LOSSAUG + READ_IMAGE, "model.pt2", "model.json", str(picture)]
    done = subprocess.run(argv, check=True, cwd=tmp_path, capture_output=True, text=True)
    got = json.loads(done.stdout.strip().splitlines()[-1])
    assert np.allclose(got, [dict(prediction.top)[name] for name in run.classes], rtol=0, atol=1e-5)
