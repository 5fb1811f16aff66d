"""A user's own data, start to finish (issue 22): audio at the data's own rate with no rate or model flags, and
``lossaug predict``, ``evaluate`` and ``export`` on an audio run and an image run, bad files included; the exported
TorchScript module loaded by plain torch in a process that cannot import lossaug gives predict's logits."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import wave
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from lossaug.cli import main
from lossaug.use import export_run, load_trained, logits_of, predict, read_inputs

FAST = ["--epochs", "2", "--batch-size", "4", "--candidates", "2", "--lr", "0.05", "--device", "cpu"]


def write_clip(path: Path, rate: int, freq: float, seconds: float, channels: int, rng) -> None:
    t = np.arange(int(rate * seconds)) / rate
    left = 0.4 * np.sin(2 * np.pi * freq * t) + 0.05 * rng.standard_normal(len(t))
    samples = np.stack([left, 0.5 * left][:channels], axis=1)
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as handle:
        handle.setnchannels(channels)
        handle.setsampwidth(2)
        handle.setframerate(rate)
        handle.writeframes((samples * 32767).astype("<i2").tobytes())


def wav_tree(root: Path, rate: int = 16000, channels: int = 2, train: int = 6, test: int = 2) -> Path:
    """``root/{train,test}/{low,high}/*.wav``: stereo tones at ``rate``, 0.08 to 0.12 s long."""
    rng = np.random.default_rng(0)
    for split, count in (("train", train), ("test", test)):
        for label, freq in (("low", 300.0), ("high", 3000.0)):
            for i in range(count):
                write_clip(root / split / label / f"{i}.wav", rate, freq, 0.08 + 0.01 * (i % 5), channels, rng)
    return root


def image_tree(root: Path, train: int = 6, test: int = 2, side: int = 8) -> Path:
    """``root/{train,test}/{red,blue}/*.png``: noisy RGB squares of ``side`` px."""
    rng = np.random.default_rng(0)
    for split, count in (("train", train), ("test", test)):
        for label, channel in (("red", 0), ("blue", 2)):
            (root / split / label).mkdir(parents=True)
            for i in range(count):
                pixels = rng.integers(0, 80, (side, side, 3), dtype=np.uint8)
                pixels[..., channel] += 150
                Image.fromarray(pixels).save(root / split / label / f"{i}.png")
    return root


@pytest.fixture(scope="module")
def audio_run(tmp_path_factory) -> tuple[Path, Path]:
    """A run of ``lossaug train --dataset audio-folder --data ROOT`` on 16 kHz stereo clips, no rate or model."""
    tmp = tmp_path_factory.mktemp("audio")
    root, out = wav_tree(tmp / "words16k"), tmp / "run"
    code = main(["train", "--dataset", "audio-folder", "--data", str(root), "--width", "2", *FAST, "--out", str(out)])
    assert code == 0
    return root, out


@pytest.fixture(scope="module")
def image_run(tmp_path_factory) -> tuple[Path, Path]:
    tmp = tmp_path_factory.mktemp("image")
    root, out = image_tree(tmp / "shapes"), tmp / "run"
    argv = ["train", "--dataset", "folder", "--data", str(root), "--model", "cnn", "--width", "2", *FAST,
            "--out", str(out)]  # fmt: skip
    assert main(argv) == 0
    return root, out


def test_audio_folder_at_16_khz_trains_audio_cnn_at_its_own_rate(audio_run):
    root, out = audio_run
    meta = json.loads((out / "config.json").read_text())
    assert meta["config"]["model"] == "audio_cnn" and meta["config"]["sample_rate"] is None
    assert meta["config"]["data"] == str(root.absolute())  # recorded absolute
    assert meta["resolved"]["inputs"] == {"kind": "audio", "channels": 1, "sample_rate": 16000, "clip_samples": 1920}
    run = load_trained(out)
    front_end = run.model.net.front_end
    assert (front_end.sample_rate, front_end.win_length, front_end.hop_length) == (16000, 400, 160)  # 25 ms, 10 ms
    assert run.classes == ("high", "low") and run.inputs.sample_rate == 16000
    final = json.loads((out / "final.json").read_text())
    assert set(final["per_class_test_error"]) == {"high", "low"}


def test_a_users_audio_model_trains_at_16_khz(tmp_path, monkeypatch, capsys):
    (tmp_path / "myaudio.py").write_text(
        textwrap.dedent("""
        import torch
        from torch import nn

        class Net(nn.Module):
            def __init__(self, num_classes, sample_rate):
                super().__init__()
                self.sample_rate = sample_rate
                self.conv = nn.Conv1d(1, 4, 64, stride=16)
                self.linear = nn.Linear(4, num_classes)

            def forward(self, waveforms):
                return self.linear(torch.relu(self.conv(waveforms)).mean(dim=2))

        def build(num_classes, in_channels=1, sample_rate=8000):
            return Net(num_classes, sample_rate)
    """)
    )
    monkeypatch.chdir(tmp_path)
    root = wav_tree(tmp_path / "words16k", train=4)
    argv = ["train", "--dataset", "audio-folder", "--data", "words16k", "--model", "myaudio:build", *FAST,
            "--epochs", "1", "--out", "run"]  # fmt: skip
    assert main(argv) == 0, capsys.readouterr().err
    assert json.loads((tmp_path / "run" / "config.json").read_text())["config"]["data"] == str(root)
    trusted = load_trained("run", trust_code="myaudio")  # the run's own module, imported only when named
    assert trusted.model.net.sample_rate == 16000  # the factory was given the data's rate


@pytest.mark.parametrize(
    ("dataset", "model", "says"),
    [
        ("audio-folder", "cnn", "--model cnn is an image network but dataset 'audio-folder' holds audio"),
        ("mini", "audio_cnn", "--model audio_cnn is an audio network but dataset 'mini' holds image"),
    ],
)
def test_a_network_of_the_other_kind_is_one_line_before_anything_is_written(tmp_path, capsys, dataset, model, says):
    root = wav_tree(tmp_path / "clips", train=1, test=1)
    data = ["--data", str(root)] if dataset == "audio-folder" else []
    assert main(["train", "--dataset", dataset, *data, "--model", model, "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert says in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "run").exists()


def test_predict_an_audio_run_with_bad_files(audio_run, tmp_path, capsys):
    root, out = audio_run
    (tmp_path / "junk.wav").write_text("not audio")
    mono_8k = tmp_path / "mono8k.wav"
    write_clip(mono_8k, 8000, 300.0, 0.3, 1, np.random.default_rng(1))  # other rate, channels and length
    good = [str(root / "test" / "low"), str(mono_8k)]
    code = main(["predict", str(out), *good, str(tmp_path / "junk.wav"), str(tmp_path / "gone.wav"), "--top", "2"])
    captured = capsys.readouterr()
    assert code == 1  # some files failed
    lines = captured.out.strip().splitlines()
    assert len(lines) == 3 and lines[-1].startswith(str(mono_8k))
    path, first, p1, second, p2 = lines[0].split("\t")
    assert path.endswith("0.wav") and {first, second} == {"low", "high"} and float(p1) >= float(p2)
    errors = captured.err.strip().splitlines()
    assert len(errors) == 2 and "junk.wav" in errors[0] and "gone.wav: no such file" in errors[1]
    assert main(["predict", str(out), good[0], "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert len(result["predictions"]) == 2 and result["failed"] == []
    assert abs(sum(t["probability"] for t in result["predictions"][0]["top"]) - result["predictions"][0]["top"][0][
        "probability"]) < 1e-9  # fmt: skip


def test_evaluate_an_audio_run_on_a_new_folder(audio_run, tmp_path, capsys):
    root, out = audio_run
    new = wav_tree(tmp_path / "new", rate=22050, channels=1, train=1, test=3)  # another rate: resampled
    assert main(["evaluate", str(out), "--data", str(new)]) == 0
    text = capsys.readouterr().out
    assert "on 6 examples" in text and "high" in text and (out / "confusion.png").stat().st_size > 0
    # Class folders at the top level, and a class the run does not know.
    (tmp_path / "flat").mkdir()
    (new / "test" / "low").rename(tmp_path / "flat" / "low")
    assert main(["evaluate", str(out), "--data", str(tmp_path / "flat"), "--json", "--out", str(tmp_path)]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["num_examples"] == 3 and result["per_class_error"]["high"] is None
    assert (tmp_path / "confusion.png").exists()
    (new / "test" / "hum").mkdir()
    write_clip(new / "test" / "hum" / "0.wav", 16000, 50.0, 0.1, 1, np.random.default_rng(2))
    assert main(["evaluate", str(out), "--data", str(new)]) == 2
    assert "classes the run does not know: hum" in capsys.readouterr().err


EXPORTED = """
import sys
sys.modules["lossaug"] = None  # lossaug cannot be imported here
try:
    import lossaug
except ImportError:
    pass
else:
    raise SystemExit("lossaug was importable")
import torch
module = torch.jit.load(sys.argv[1])
torch.save([module(x) for x in torch.load(sys.argv[2])], sys.argv[3])
"""


def run_exported(model: Path, inputs: list[torch.Tensor], tmp_path: Path) -> list[torch.Tensor]:
    torch.save(inputs, tmp_path / "inputs.pt")
    subprocess.run([sys.executable, "-I", "-c", EXPORTED, str(model), str(tmp_path / "inputs.pt"),
                    str(tmp_path / "logits.pt")], check=True, cwd=tmp_path)  # fmt: skip
    return torch.load(tmp_path / "logits.pt")


def test_export_an_audio_run_loads_with_torch_alone(audio_run, tmp_path, capsys):
    root, out = audio_run
    assert main(["export", str(out), "--out", str(tmp_path / "model.pt"), "--format", "torchscript"]) == 0
    meta = json.loads((tmp_path / "model.json").read_text())
    assert meta["classes"] == ["high", "low"] and meta["inputs"]["sample_rate"] == 16000
    assert meta["provenance"]["dataset"] == "audio-folder" and meta["provenance"]["model"] == "audio_cnn"
    run = load_trained(out)
    files = sorted((root / "test").rglob("*.wav"))
    _, clips, failed = read_inputs(((str(f), f) for f in files), run.inputs)
    assert not failed and clips.dtype == torch.int16
    expected = logits_of(run, clips)
    as_int, as_float = run_exported(tmp_path / "model.pt", [clips, clips.float() / 32768], tmp_path)
    torch.testing.assert_close(as_int, expected)
    torch.testing.assert_close(as_float, expected)
    probs = torch.tensor([p.probability for p in predict(run, [str(f) for f in files]).predictions])
    torch.testing.assert_close(as_int.softmax(1).max(1).values, probs)


def test_predict_evaluate_and_export_an_image_run(image_run, tmp_path, capsys):
    root, out = image_run
    run = load_trained(out)
    assert run.inputs.shape == (3, 8, 8) and run.classes == ("blue", "red")
    big_gray = tmp_path / "gray.png"
    Image.fromarray(np.full((20, 30), 200, np.uint8)).save(big_gray)  # gray, another size: RGB, resized
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    code = main(["predict", str(out), str(root / "test"), str(big_gray), str(tmp_path / "broken.png")])
    captured = capsys.readouterr()
    assert code == 1 and len(captured.out.strip().splitlines()) == 5
    assert captured.err.count("broken.png") == 1 and len(captured.err.strip().splitlines()) == 1
    # evaluate an archive of test/<class>/ inside one wrapping folder
    archive = tmp_path / "new.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for f in sorted((root / "test").rglob("*.png")):
            zf.write(f, f"shapes/{f.relative_to(root)}")
    assert main(["evaluate", str(out), "--data", str(archive), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["split"] == "test" and result["num_examples"] == 4 and sum(map(sum, result["confusion"])) == 4
    final = json.loads((out / "final.json").read_text())
    assert result["error"] == pytest.approx(float(np.mean([e for e in final["per_class_test_error"].values()])))
    # export: uint8 images in, the same logits as predict's model
    exported = export_run(run, tmp_path / "net.ts", format="torchscript")
    assert exported.metadata["inputs"] == {"kind": "image", "channels": 3, "height": 8, "width": 8}
    _, images, _ = read_inputs(((str(f), f) for f in sorted((root / "test").rglob("*.png"))), run.inputs)
    (logits,) = run_exported(tmp_path / "net.ts", [images], tmp_path)
    torch.testing.assert_close(logits, logits_of(run, images))
    assert not logits.requires_grad and all(p.requires_grad for p in run.model.parameters())  # a copy was frozen


def test_export_refuses_wrong_inputs_with_a_clear_message(image_run, tmp_path):
    _, out = image_run
    module = torch.jit.load(str(export_run(load_trained(out), tmp_path / "m.pt", format="torchscript").path))
    with pytest.raises(Exception, match="uint8"):
        module(torch.zeros(1, 3, 8, 8))
    with pytest.raises(Exception, match=r"\(B,3,8,8\)"):
        module(torch.zeros(1, 3, 9, 8, dtype=torch.uint8))


def test_predict_needs_files_and_a_run(image_run, tmp_path, capsys):
    _, out = image_run
    (tmp_path / "empty").mkdir()
    assert main(["predict", str(out), str(tmp_path / "empty")]) == 2
    assert "no files to predict" in capsys.readouterr().err
    assert main(["predict", str(tmp_path / "empty"), str(tmp_path)]) == 2


def test_public_helpers_take_str_paths(tmp_path):
    from lossaug.data import decode_audio, decode_image, load_audio_folder, load_image_folder

    root = wav_tree(tmp_path / "clips", train=1, test=1)
    samples, rate = decode_audio(str(root / "train" / "low" / "0.wav"))
    assert rate == 16000 and samples.dtype == np.float32
    assert load_audio_folder(str(root), cache_dir=str(tmp_path / "cache")).sample_rate == 16000
    images = image_tree(tmp_path / "images", train=1, test=1)
    assert decode_image(str(images / "train" / "red" / "0.png")).shape == (8, 8, 3)
    assert load_image_folder(str(images)).classes == ("blue", "red")


def test_small_data_warnings_say_what_to_change():
    from lossaug.run.guards import small_data_warnings, suggested_batch_size

    dropped, few = small_data_warnings(360, 128, "clips")
    assert "104 of 360 training clips (29%)" in dropped and "--batch-size" in dropped
    assert "only 2 steps per epoch" in few and "--batch-size 32" in few
    assert small_data_warnings(5000, 128) == [] and suggested_batch_size(360) == 32


def test_report_and_show_write_into_the_run_directory(image_run, tmp_path, capsys):
    _, out = image_run
    assert main(["report", str(out), "--per-class"]) == 0
    text = capsys.readouterr().out
    assert (out / "report.png").stat().st_size > 0 and "blue" in text and "red" in text
    assert main(["show", str(out), "--images", "2", "--candidates", "2", "--cache-dir", str(tmp_path)]) == 0
    assert (out / "candidates.png").stat().st_size > 0


def test_a_run_recorded_with_a_relative_data_path_is_still_found(tmp_path, monkeypatch):
    from lossaug.run.config import TrainConfig
    from lossaug.run.train import train
    from lossaug.show import load_run

    monkeypatch.chdir(tmp_path)
    image_tree(tmp_path / "shapes", train=4, test=1)
    config = TrainConfig(dataset="folder", data="shapes", model="cnn", width=2, epochs=1, batch_size=4,
                         num_candidates=2, device="cpu", out="runs/one")  # fmt: skip
    train(config)
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    run = load_run(tmp_path / "runs" / "one")
    assert run.config.data == "shapes" and len(run.test.labels) == 2


def test_eta_after_the_first_epoch_only():
    from lossaug.run.guards import EtaNote

    lines: list[str] = []

    class Reporter:
        def log(self, line: str) -> None:
            lines.append(line)

    note = EtaNote(Reporter(), epochs=5)  # type: ignore[arg-type]
    note.on_epoch({"epoch": 1, "seconds": 30.0})
    note.on_epoch({"epoch": 2, "seconds": 30.0})
    assert len(lines) == 1 and lines[0].startswith("ETA: about 2.0 min of training for the remaining 4 epochs")


def test_dataset_help_names_every_data_set():
    import dataclasses

    from lossaug.data import DATASETS
    from lossaug.run.config import TrainConfig

    (field,) = [f for f in dataclasses.fields(TrainConfig) if f.name == "dataset"]
    assert all(name in field.metadata["help"] for name in DATASETS)
