"""Nothing lost, nothing poisoned, round two (issue 23): what ``--overwrite`` removes, ``--init`` files that are not
float weights, models whose output does not fit the data, a full disk during a save, one-line errors where a
traceback used to be.

Training runs here are tiny (64 mini CIFAR images, cnn width 4, one epoch: about a second each).
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import warnings
from pathlib import Path

import pytest
import torch

from lossaug.cli import main
from lossaug.run.rundir import RunDirError, claim_run_dir, run_files


def tiny(tmp_path: Path, model: str | None = None) -> list[str]:
    """Options of a tiny run: the cnn at width 4, or ``model`` (a factory, at its own width)."""
    network = ["--model", "cnn", "--width", "4"] if model is None else ["--model", model]
    return ["--dataset", "mini", "--train-size", "64", *network, "--batch-size", "32",
            "--epochs", "1", "--method", "baseline", "--device", "cpu",
            "--cache-dir", str(tmp_path / "cache")]  # fmt: skip


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    """A finished tiny run (copy it before changing it)."""
    root = tmp_path_factory.mktemp("finished")
    assert main(["train", *tiny(root), "--out", str(root / "run")]) == 0
    return root / "run"


def one_line_error(capsys, *needles: str) -> str:
    """The one error line on stderr (progress lines may precede it), holding each of ``needles``."""
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("lossaug: error: ")]
    assert len(errors) == 1 and "Traceback" not in err and err.rstrip().endswith(errors[0]), err
    for needle in needles:
        assert needle in errors[0], err
    return errors[0]


# ---------------------------------------------------------------------------------------------------------------
# Item 1: --overwrite removes only what lossaug wrote; --init inside an --out being overwritten is refused


def user_files(out: Path) -> dict[str, bytes]:
    """A user's own files beside (or instead of) a run: a pretrained checkpoint, a TensorBoard folder, notes."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "checkpoint_pretrained.pth").write_bytes(b"my weights")
    (out / "tensorboard").mkdir(exist_ok=True)
    (out / "tensorboard" / "events.out.tfevents.mine").write_bytes(b"my events")
    (out / "notes.txt").write_text("mine")
    return {name: (out / name).read_bytes() for name in ("checkpoint_pretrained.pth", "notes.txt",
                                                          "tensorboard/events.out.tfevents.mine")}  # fmt: skip


def assert_kept(out: Path, files: dict[str, bytes]) -> None:
    for name, content in files.items():
        assert (out / name).read_bytes() == content, name


def test_user_files_never_make_a_run_nor_are_removed_by_overwrite(tmp_path):
    out = tmp_path / "run"
    mine = user_files(out)
    assert run_files(out) == []  # a checkpoint*.pt* of the user's is not a run
    claim_run_dir(out, resume=False, overwrite=True, tensorboard=False)
    assert_kept(out, mine)


def test_overwrite_removes_the_run_and_keeps_the_users_files(tmp_path, finished_run, capsys):
    out = tmp_path / "run"
    shutil.copytree(finished_run, out)  # a finished tiny run, trained once for the module
    mine = user_files(out)  # added after the run, which had no TensorBoard log
    found = {p.name for p in run_files(out)}
    assert {"config.json", "metrics.jsonl", "final.json", "checkpoint.pt"} <= found
    assert not found & {"checkpoint_pretrained.pth", "tensorboard", "notes.txt"}
    capsys.readouterr()
    assert main(["train", *tiny(tmp_path), "--out", str(out), "--overwrite"]) == 0
    assert_kept(out, mine)
    assert json.loads((out / "final.json").read_text())["epochs"] == 1


@pytest.mark.parametrize("name", ["config.json", "checkpoint.pt", "metrics.jsonl"])
def test_a_file_lossaug_did_not_write_at_one_of_its_names_is_never_replaced(tmp_path, name):
    out = tmp_path / "run"
    out.mkdir()
    (out / name).write_text("someone else's")
    for overwrite in (False, True):
        with pytest.raises(RunDirError, match=rf"{out / name}.* not written by lossaug"):
            claim_run_dir(out, resume=False, overwrite=overwrite, tensorboard=False)
    assert (out / name).read_text() == "someone else's"


def test_a_users_tensorboard_folder_is_refused_only_when_the_run_logs_there(tmp_path):
    out = tmp_path / "run"
    mine = user_files(out)
    claim_run_dir(out, resume=False, overwrite=False, tensorboard=False)
    with pytest.raises(RunDirError, match=r"tensorboard.* not written by lossaug"):
        claim_run_dir(out, resume=False, overwrite=True, tensorboard=True)
    assert_kept(out, mine)


@pytest.mark.parametrize("init", ["checkpoint.pt", "."], ids=["its-checkpoint", "the-run-dir"])
def test_init_inside_the_out_being_overwritten_is_refused_up_front(tmp_path, finished_run, capsys, init):
    out = tmp_path / "run"
    shutil.copytree(finished_run, out)  # a finished tiny run, trained once for the module
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    capsys.readouterr()
    code = main(["train", *tiny(tmp_path), "--out", str(out), "--overwrite", "--init", str(out / init)])
    assert code == 2
    one_line_error(capsys, "--init", "--overwrite", str(out))
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before


# ---------------------------------------------------------------------------------------------------------------
# Item 8: a full disk during a checkpoint save is one line, leaves no temporary file and keeps the last good one


class FullDisk:
    """A file opened for writing on a disk that fills after ``room`` bytes: writes then fail with ENOSPC, as the
    kernel's do. torch's zip writer reports that as a RuntimeError ('unexpected pos ...')."""

    def __init__(self, path, mode, room: int):
        self.handle, self.room = open(path, mode), room  # noqa: SIM115

    def write(self, data) -> int:
        if len(data) > self.room:
            raise OSError(errno.ENOSPC, "No space left on device")
        self.room -= len(data)
        return self.handle.write(data)

    def __getattr__(self, name):
        return getattr(self.handle, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.handle.close()


def test_a_full_disk_during_a_checkpoint_save_is_one_line_and_keeps_the_last_good_one(tmp_path, capsys, monkeypatch):
    import lossaug.run.checkpoint as checkpoint_module

    out, opened = tmp_path / "run", []

    def open_on_a_filling_disk(path, mode="r", *args, **kwargs):
        opened.append(path)
        return FullDisk(path, mode, room=4096) if len(opened) == 2 else open(path, mode, *args, **kwargs)  # noqa: SIM115

    monkeypatch.setattr(checkpoint_module, "open", open_on_a_filling_disk, raising=False)
    assert main(["train", *tiny(tmp_path), "--checkpoint-every", "1", "--out", str(out)]) == 2
    one_line_error(capsys, f"could not save checkpoint {out / 'checkpoint.pt'}", "No space left on device")
    assert not (out / "checkpoint.pt.tmp").exists()
    assert torch.load(out / "checkpoint.pt", weights_only=True)["global_step"] == 1  # the last good one
    monkeypatch.undo()  # space freed: the run resumes from it
    assert main(["train", "--resume", str(out)]) == 0


# ---------------------------------------------------------------------------------------------------------------
# Item 3: --init tensors that are not float weights, or not finite, are refused at load; other floats converted


def cnn_weights(path: Path, convert) -> Path:
    """The tiny cnn's state dict (10 classes, width 4), each floating tensor passed through ``convert``."""
    from lossaug.models import build_model

    state = build_model("cnn", 10, 3, 4).state_dict()
    torch.save({k: convert(v) if v.is_floating_point() else v for k, v in state.items()}, path)
    return path


@pytest.mark.parametrize("dtype", [torch.int64, torch.uint8, torch.bool])
def test_init_with_integer_weights_is_refused_naming_the_tensors(tmp_path, capsys, dtype):
    init = cnn_weights(tmp_path / "w.pt", lambda v: (v * 100).to(dtype))
    out = tmp_path / "run"
    assert main(["train", *tiny(tmp_path), "--init", str(init), "--out", str(out)]) == 2
    one_line_error(capsys, f"--init {init}", str(dtype).removeprefix("torch."), "features.0.weight", "floating point")
    assert run_files(out) == []  # nothing written: no --overwrite needed to try again


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_init_with_other_float_weights_is_converted_and_said_so(tmp_path, capsys, dtype):
    init = cnn_weights(tmp_path / "w.pt", lambda v: v.to(dtype))
    assert main(["train", *tiny(tmp_path), "--init", str(init), "--out", str(tmp_path / "run")]) == 0
    err = capsys.readouterr().err
    assert f"converted from {str(dtype).removeprefix('torch.')} to float32" in err, err
    assert "features.0.weight" in err.split("converted")[1], err
    recorded = json.loads((tmp_path / "run" / "config.json").read_text())["init"]
    assert "features.0.weight" in " ".join(recorded["converted"])


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_init_with_non_finite_weights_is_refused_at_load_naming_the_file(tmp_path, capsys, value):
    def poison(v):
        v = v.clone()
        v.view(-1)[0] = value
        return v

    init = cnn_weights(tmp_path / "w.pt", poison)
    out = tmp_path / "run"
    assert main(["train", *tiny(tmp_path), "--init", str(init), "--out", str(out)]) == 2
    err = one_line_error(capsys, f"--init {init}", "not finite", "features.0.weight")
    assert "checkpoint is kept" not in err
    assert run_files(out) == []


# ---------------------------------------------------------------------------------------------------------------
# Item 4: a model whose output does not fit the data is refused before anything is written (train, bench, compare,
# show: one shared check)

_FACTORY = """
import torch
from torch import nn


class Net(nn.Module):
    def __init__(self, num_classes):
        super().__init__()
        self.fc = nn.Linear(3, {outputs})
        self.fc.requires_grad_({trainable})

    def forward(self, x):
        logits = self.fc(x.float().mean((2, 3)))
        return {output}


def make(num_classes):
    return Net(num_classes)
"""

BAD_OUTPUTS = {  # name: (classifier outputs, forward's return, trainable)
    "fifty_logits": ("50", "logits", True),
    "three_logits": ("3", "logits", True),
    "a_tuple": ("num_classes", "logits, logits", True),
    "a_dict": ("num_classes", "{'logits': logits}", True),
    "flat": ("num_classes", "logits.flatten()", True),
    "spatial": ("num_classes", "logits[:, :, None, None].expand(-1, -1, 4, 4)", True),
    "integers": ("num_classes", "(logits * 100).long()", True),
    "frozen": ("num_classes", "logits", False),
}
WHAT = {"fifty_logits": "(2, 50)", "three_logits": "(2, 3)", "a_tuple": "tuple", "a_dict": "dict", "flat": "(20,)",
        "spatial": "(2, 10, 4, 4)", "integers": "int64", "frozen": "no trainable parameters"}  # fmt: skip


def factory_module(tmp_path: Path, monkeypatch, kind: str, name: str | None = None) -> str:
    """Write a model factory module into the current directory; returns its ``--model`` value."""
    outputs, output, trainable = BAD_OUTPUTS.get(kind, ("num_classes", "logits", True))
    module = name or f"issue23_{kind}_{tmp_path.name}"
    (tmp_path / f"{module}.py").write_text(_FACTORY.format(outputs=outputs, output=output, trainable=trainable))
    monkeypatch.chdir(tmp_path)
    return f"{module}:make"


@pytest.mark.parametrize("kind", sorted(BAD_OUTPUTS))
def test_a_model_whose_output_does_not_fit_is_refused_before_anything_is_written(tmp_path, monkeypatch, capsys, kind):
    model = factory_module(tmp_path, monkeypatch, kind)
    out = tmp_path / "run"
    assert main(["train", *tiny(tmp_path, model), "--out", str(out)]) == 2
    one_line_error(capsys, f"--model {model}", WHAT[kind], "(B, num_classes) = (2, 10)")
    assert run_files(out) == []


def test_bench_compare_and_show_check_the_model_output_too(tmp_path, monkeypatch, capsys):
    bad = factory_module(tmp_path, monkeypatch, "a_tuple")
    assert main(["bench", "--model", bad, "--quick", "--device", "cpu"]) == 2
    one_line_error(capsys, f"--model {bad}", "tuple", "(B, num_classes)")
    shared = [part for part in tiny(tmp_path, bad) if part not in ("--method", "baseline")]  # compare sets it per arm
    compare = ["compare", *shared, "--seeds", "0", "--arms", "baseline,proposed",
               "--cost-ratio", "2", "--out", str(tmp_path / "cmp")]  # fmt: skip
    assert main(compare) == 2
    one_line_error(capsys, f"--model {bad}", "tuple")
    assert not list((tmp_path / "cmp").rglob("final.json"))
    # show: a run trained with a good factory whose module then changed to return a tuple
    name = f"issue23_changes_{tmp_path.name}"
    good = factory_module(tmp_path, monkeypatch, "good", name=name)
    assert main(["train", *tiny(tmp_path, good), "--out", str(tmp_path / "run")]) == 0
    factory_module(tmp_path, monkeypatch, "a_tuple", name=name)
    import sys

    sys.modules.pop(name, None)
    capsys.readouterr()
    code = main(
        [
            "show",
            str(tmp_path / "run"),
            "--out",
            str(tmp_path / "show.png"),
            "--cache-dir",
            str(tmp_path / "cache"),
            "--trust-code",
            name,
        ]
    )
    assert code == 2
    one_line_error(capsys, f"--model {good}", "tuple")


def test_overwrite_with_a_model_that_does_not_fit_keeps_the_old_run(tmp_path, finished_run, monkeypatch, capsys):
    out = tmp_path / "run"
    shutil.copytree(finished_run, out)  # a finished tiny run, trained once for the module
    before = {p.name: p.read_bytes() for p in run_files(out)}
    bad = factory_module(tmp_path, monkeypatch, "a_dict")
    capsys.readouterr()
    assert main(["train", *tiny(tmp_path, bad), "--out", str(out), "--overwrite"]) == 2
    one_line_error(capsys, f"--model {bad}", "dict")
    assert {p.name: p.read_bytes() for p in run_files(out)} == before  # removed only once the new run is set up


# ---------------------------------------------------------------------------------------------------------------
# Item 9: one line where a traceback used to be


@pytest.mark.parametrize("content", [b"", b"hello", b"PK\x03\x04 cut short"], ids=["empty", "text", "cut-zip"])
def test_init_or_show_of_a_file_that_is_not_a_torch_file_is_one_line(tmp_path, capsys, content):
    bad = tmp_path / "weights.pt"
    bad.write_bytes(content)
    assert main(["train", *tiny(tmp_path), "--init", str(bad), "--out", str(tmp_path / "run")]) == 2
    one_line_error(capsys, f"--init {bad}")
    assert main(["show", str(bad), "--out", str(tmp_path / "show.png")]) == 2
    one_line_error(capsys, str(bad))


_CHANGING = """
from torch import nn


def make(num_classes):
    layers = nn.Conv2d(3, {width}, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear({width}, num_classes)
    return nn.Sequential(*layers)
"""


def test_resume_or_show_after_the_factory_changed_shapes_is_one_line(tmp_path, monkeypatch, capsys):
    import sys

    monkeypatch.chdir(tmp_path)
    module = f"issue23_widens_{tmp_path.name}"
    (tmp_path / f"{module}.py").write_text(_CHANGING.format(width=4))
    out = tmp_path / "run"
    assert main(["train", *tiny(tmp_path, f"{module}:make"), "--out", str(out)]) == 0
    (tmp_path / f"{module}.py").write_text(_CHANGING.format(width=6))
    sys.modules.pop(module, None)
    capsys.readouterr()
    assert main(["train", "--resume", str(out), "--epochs", "2"]) == 2
    one_line_error(capsys, str(out), "0.weight (6, 3, 3, 3)", "(4, 3, 3, 3)")
    assert main(["show", str(out), "--out", str(tmp_path / "show.png"), "--trust-code", module]) == 2
    one_line_error(capsys, str(out), "0.weight (6, 3, 3, 3)", "(4, 3, 3, 3)")


def test_report_on_metrics_from_another_version_is_one_line(tmp_path, finished_run, capsys):
    out = tmp_path / "run"
    shutil.copytree(finished_run, out)  # a finished tiny run, trained once for the module
    metrics = out / "metrics.jsonl"
    record = json.loads(metrics.read_text())
    del record["entropy"]
    metrics.write_text(json.dumps(record) + "\n")
    capsys.readouterr()
    assert main(["report", str(out), "--out", str(tmp_path / "report.png")]) == 2
    one_line_error(capsys, f"{metrics} line 1", "entropy")


@pytest.mark.parametrize("command", ["report", "show"])
def test_report_and_show_refuse_an_unsupported_format_and_fill_an_existing_folder(
    tmp_path, finished_run, capsys, command
):
    out = tmp_path / "run"
    shutil.copytree(finished_run, out)  # a finished tiny run, trained once for the module
    extra = ["--cache-dir", str(tmp_path / "cache")] if command == "show" else []
    capsys.readouterr()
    assert main([command, str(out), "--out", str(tmp_path / "x.txt"), *extra]) == 2
    one_line_error(capsys, "--out", "x.txt", ".png")
    assert not (tmp_path / "x.txt").exists()
    folder = tmp_path / "figures"
    folder.mkdir()
    assert main([command, str(out), "--out", str(folder), *extra]) == 0
    (written,) = folder.iterdir()
    assert written.suffix == ".png" and f"wrote {written}" in capsys.readouterr().out


def test_bench_with_images_too_small_for_the_model_is_one_line(capsys):
    assert main(["bench", "--model", "cnn", "--image-size", "2", "--quick", "--device", "cpu"]) == 2
    one_line_error(capsys, "2 px", "cnn needs at least 8 px", "--image-size 8")


@pytest.mark.parametrize(
    "source,needles",
    [("def make(:\n", ("SyntaxError", "line 1")), ("raise RuntimeError('boom')\n", ("RuntimeError: boom", "line 1"))],
    ids=["syntax-error", "raises-at-import"],
)
def test_a_model_module_that_cannot_be_imported_is_one_line(tmp_path, monkeypatch, capsys, source, needles):
    monkeypatch.chdir(tmp_path)
    module = f"issue23_broken_{tmp_path.name}"
    (tmp_path / f"{module}.py").write_text(source)
    assert main(["train", *tiny(tmp_path, f"{module}:make"), "--out", str(tmp_path / "run")]) == 2
    one_line_error(capsys, f"--model {module}:make", f"{module}.py", *needles)


def test_an_error_inside_the_factory_call_keeps_its_traceback(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    module = f"issue23_factory_raises_{tmp_path.name}"
    (tmp_path / f"{module}.py").write_text("def make(num_classes):\n    raise ZeroDivisionError('in the factory')\n")
    with pytest.raises(ZeroDivisionError, match="in the factory"):  # the user's bug: its traceback is the report
        main(["train", *tiny(tmp_path, f"{module}:make"), "--out", str(tmp_path / "run")])


# ---------------------------------------------------------------------------------------------------------------
# Item 10 (train side): config.json never lies about epochs; errors that need a path name it


def test_resume_with_fewer_epochs_than_already_run_is_refused_and_config_json_kept(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", *tiny(tmp_path), "--epochs", "2", "--out", str(out)]) == 0
    before = (out / "config.json").read_bytes()
    capsys.readouterr()
    assert main(["train", "--resume", str(out), "--epochs", "1"]) == 2
    one_line_error(capsys, str(out), "--epochs 1", "2 epochs")
    assert (out / "config.json").read_bytes() == before
    assert json.loads((out / "config.json").read_text())["config"]["epochs"] == 2


def test_out_that_is_a_file_is_one_line_naming_it(tmp_path, capsys):
    out = tmp_path / "run"
    out.write_text("a file")
    assert main(["train", *tiny(tmp_path), "--out", str(out)]) == 2
    one_line_error(capsys, f"{out} exists and is not a directory")
    assert out.read_text() == "a file"


def test_a_full_disk_while_writing_metrics_names_the_file(tmp_path, capsys, monkeypatch):
    import lossaug.run.telemetry as telemetry

    def full(path, mode="r", *args, **kwargs):
        return FullDisk(path, mode, room=0) if "a" in mode else open(path, mode, *args, **kwargs)  # noqa: SIM115

    monkeypatch.setattr(telemetry, "open", full, raising=False)
    out = tmp_path / "run"
    assert main(["train", *tiny(tmp_path), "--out", str(out)]) == 2
    one_line_error(capsys, str(out / "metrics.jsonl"), "No space left on device")


# ---------------------------------------------------------------------------------------------------------------
# Item 6: resampling in bounded memory and time for any pair of rates

_RESAMPLE_UNDER_A_LIMIT = """
import math, resource, sys, time
import torch
from lossaug.data.wav import resample

orig, new = int(sys.argv[1]), int(sys.argv[2])
t = torch.arange(orig // 2, dtype=torch.float64) / orig  # half a second
clip = torch.sin(2 * math.pi * 1000 * t).float()
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
started = time.perf_counter()
out = resample(clip, orig, new)
seconds = time.perf_counter() - started
grown = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024  # MiB (ru_maxrss is in KiB)
expected = torch.sin(2 * math.pi * 1000 * torch.arange(len(out), dtype=torch.float64) / new).float()
error = (out - expected)[100:-100].abs().max().item()  # the ends are zero-padded
print(len(out), math.ceil(len(clip) * new / orig), round(grown, 1), round(seconds, 2), error)
"""


@pytest.mark.parametrize("orig,new", [(8001, 16000), (44101, 16000), (16000, 44101)])
def test_resampling_prime_rates_stays_within_a_memory_bound(orig, new):
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-c", _RESAMPLE_UNDER_A_LIMIT, str(orig), str(new)],
                            capture_output=True, text=True, timeout=120)  # fmt: skip
    assert result.returncode == 0, result.stderr
    length, expected_length, grown_mib, seconds, error = result.stdout.split()
    assert length == expected_length
    assert float(grown_mib) < 64, f"resampling {orig} -> {new} Hz grew the process by {grown_mib} MiB"
    assert float(seconds) < 10
    assert float(error) < 0.02  # a 1 kHz tone stays a 1 kHz tone


def test_direct_and_polyphase_resampling_agree():
    import lossaug.data.wav as wav

    clip = torch.randn(2, 3000, generator=torch.Generator().manual_seed(0))
    for orig, new in ((8000, 11025), (11025, 8000), (16000, 44100)):
        polyphase = wav.resample(clip, orig, new)
        direct = wav._resample_direct(clip, orig, new, zero_crossings=6, rolloff=0.99)
        assert direct.shape == polyphase.shape
        assert torch.allclose(direct, polyphase, atol=1e-5), (orig, new, (direct - polyphase).abs().max())


# ---------------------------------------------------------------------------------------------------------------
# Item 7: an unreadable decoded cache is decoded again; a cache that cannot be written lets the run go on


def _tiny_dataset():
    from lossaug.data.types import ImageDataset, Split

    images = torch.arange(2 * 3 * 4 * 4, dtype=torch.uint8).view(2, 3, 4, 4)
    return ImageDataset("tiny", ("a", "b"), Split(images, torch.tensor([0, 1])), Split(images, torch.tensor([1, 0])))


def _cached(cache_dir: Path, logs: list[str], loads: list[int]):
    from lossaug.data.cache import cached

    def load():
        loads.append(1)
        return _tiny_dataset()

    return cached("image", cache_dir, "tiny", lambda: "content", None, load, logs.append)


@pytest.mark.parametrize("damage", ["zero-bytes", "cut-short", "not-npz", "unreadable-dir"])
def test_an_unreadable_decoded_cache_is_decoded_again_and_rewritten(tmp_path, damage):
    logs, loads = [], []
    _cached(tmp_path, logs, loads)
    (path,) = tmp_path.glob("tiny-*.npz")
    if damage == "zero-bytes":
        path.write_bytes(b"")
    elif damage == "cut-short":
        path.write_bytes(path.read_bytes()[:100])
    elif damage == "not-npz":
        path.write_bytes(b"\x93NUMPY garbage")
    else:  # a folder where the file should be cannot be read, nor replaced: decoded, and a warning
        path.unlink()
        path.mkdir()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        dataset = _cached(tmp_path, logs, loads)
    assert len(loads) == 2 and torch.equal(dataset.train.inputs, _tiny_dataset().train.inputs)
    assert any(f"unreadable cache file {path}" in line for line in logs), logs
    if damage == "unreadable-dir":
        assert any(str(path) in str(w.message) for w in caught)
        return
    _cached(tmp_path, logs, loads)
    assert len(loads) == 2 and logs[-1] == f"cache hit {path}"  # rewritten, and read back


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EROFS, errno.EACCES])
def test_a_full_or_read_only_cache_directory_warns_and_goes_on_without_a_cache(tmp_path, monkeypatch, code):
    import lossaug.data.cache as cache_module

    def cannot_write(path):
        raise OSError(code, os.strerror(code), str(path))

    monkeypatch.setattr(cache_module, "atomic_file", cannot_write)
    logs, loads = [], []
    with pytest.warns(UserWarning, match=rf"{tmp_path}.*{os.strerror(code)}.*without"):
        dataset = _cached(tmp_path, logs, loads)
    assert len(loads) == 1 and torch.equal(dataset.test.labels, torch.tensor([1, 0]))


def test_a_cache_dir_that_is_a_file_is_one_line_naming_it(tmp_path, capsys):
    cache = tmp_path / "cache"
    cache.write_text("a file")
    args = [a if a != str(tmp_path / "cache") else str(cache) for a in tiny(tmp_path)]
    args = [*args[: args.index("--dataset") + 1], "folder", "--data", str(tmp_path / "images"), *args[2:]]
    assert main(["train", *args, "--out", str(tmp_path / "run")]) == 2
    one_line_error(capsys, f"--cache-dir {cache}", "not a directory")


def test_a_wav_cut_within_its_header_says_so(tmp_path):
    import io
    import wave

    from lossaug.data.wav import decode_audio

    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as w:
        w.setnchannels(1), w.setsampwidth(2), w.setframerate(8000), w.writeframes(b"\0\0" * 100)
    for cut in (12, 20, 30):
        clip = tmp_path / f"cut{cut}.wav"
        clip.write_bytes(buffer.getvalue()[:cut])
        with pytest.raises(ValueError, match=rf"{clip}: \S") as caught:  # the file, then libsndfile's reason
            decode_audio(clip)
        assert "()" not in str(caught.value) and len(str(caught.value).split(f"{clip}: ", 1)[1]) > 5


# ---------------------------------------------------------------------------------------------------------------
# Items 2, 5 and 10 (compare): a protocol is validated before anything is written and never replaces the one that
# produced results; every file a summary reads is checked; 0-epoch arms and no arms are refused up front


class InstantTrain:
    """Stands in for ``train`` in compare: writes a finished run's files (a step of selection costs 2 s)."""

    def __init__(self):
        self.calls = []

    def __call__(self, config, reporter=None, resume=False, overwrite=False):
        import dataclasses

        self.calls.append(config)
        out = Path(config.out)
        out.mkdir(parents=True, exist_ok=True)
        meta = {"config": dataclasses.asdict(config), "git_commit": "c0ffee", "git_dirty": False}
        (out / "config.json").write_text(json.dumps(meta))
        cost = 1.0 if config.method == "baseline" else 2.0
        lines = [json.dumps({"epoch": e, "seconds": cost}) + "\n" for e in range(1, config.epochs + 1)]
        (out / "metrics.jsonl").write_text("".join(lines))
        error = 0.5 - 0.01 * (config.method != "baseline") - 0.001 * config.seed
        final = {"test_error": error, "train_error": 0.1, "seconds": cost * config.epochs, "device": "cpu",
                 "epochs": config.epochs}  # fmt: skip
        (out / "final.json").write_text(json.dumps(final))


PROTOCOL = """[compare]
out = "{out}"
arms = {arms}
seeds = {seeds}
cost_ratio = {ratio}

[train]
dataset = "mini"
train_size = 64
model = "cnn"
width = 2
epochs = 2
batch_size = 32
device = "cpu"
"""


@pytest.fixture
def instant(monkeypatch):
    import lossaug.compare.runner as runner

    fake = InstantTrain()
    monkeypatch.setattr(runner, "train", fake)
    monkeypatch.setattr(runner, "git_commit", lambda: "c0ffee")
    return fake


def protocol(tmp_path: Path, name: str, arms='["baseline", "proposed"]', seeds="[0, 1]", ratio="2.0") -> Path:
    path = tmp_path / name
    path.write_text(PROTOCOL.format(out=tmp_path / "cmp", arms=arms, seeds=seeds, ratio=ratio))
    return path


def test_a_refused_protocol_never_replaces_the_recorded_one(tmp_path, capsys, instant):
    first = protocol(tmp_path, "first.toml")
    assert main(["compare", "--protocol", str(first)]) == 0
    recorded = tmp_path / "cmp" / "protocol.toml"
    assert recorded.read_text() == first.read_text()
    capsys.readouterr()
    duplicate = protocol(tmp_path, "dup.toml", seeds="[0, 0]")
    assert main(["compare", "--protocol", str(duplicate)]) == 2
    one_line_error(capsys, "seeds")
    assert recorded.read_text() == first.read_text()
    other = protocol(tmp_path, "other.toml", seeds="[0, 1, 2]")  # valid, but not what produced the results
    calls = len(instant.calls)
    assert main(["compare", "--protocol", str(other)]) == 2
    one_line_error(capsys, str(recorded), str(other))
    assert recorded.read_text() == first.read_text() and len(instant.calls) == calls
    assert main(["compare", "--protocol", str(first)]) == 0  # the same protocol again: fine


def test_a_cost_ratio_giving_an_arm_no_epochs_is_refused_before_training(tmp_path, capsys, instant):
    tiny_ratio = protocol(tmp_path, "p.toml", arms='["baseline", "proposed", "baseline-equal-time"]', ratio="0.1")
    assert main(["compare", "--protocol", str(tiny_ratio)]) == 2
    one_line_error(capsys, "baseline-equal-time", "0 epochs", "cost_ratio")
    assert instant.calls == [] and not (tmp_path / "cmp" / "protocol.toml").exists()


def test_no_arms_is_an_error(tmp_path, capsys, instant):
    assert main(["compare", "--protocol", str(protocol(tmp_path, "p.toml", arms="[]"))]) == 2
    one_line_error(capsys, "arms")
    assert instant.calls == []


def _finished_comparison(tmp_path: Path, capsys) -> Path:
    assert main(["compare", "--protocol", str(protocol(tmp_path, "p.toml"))]) == 0
    capsys.readouterr()
    return tmp_path / "cmp" / "setting-A" / "proposed" / "seed-1"


@pytest.mark.parametrize(
    "name,damage,needles",
    [
        ("metrics.jsonl", "", ("no epoch records", "final.json")),
        ("metrics.jsonl", '{"epoch": 1, "seconds": 2.0}\n{"epoch": 2, "sec', ("line 2", "not valid JSON")),
        ("metrics.jsonl", '{"epoch": 1}\n{"epoch": 2}\n', ("line 1", "seconds")),
        ("final.json", '{"test_error": 0.4', ("not valid JSON",)),
        ("final.json", '{"test_error": "low"}', ("test_error",)),
        ("config.json", '{"config": {"epo', ("not valid JSON",)),
    ],
    ids=["empty-metrics", "cut-metrics-line", "metrics-without-seconds", "cut-final", "bad-final", "cut-config"],
)
def test_a_summary_names_a_broken_run_file_in_one_line(tmp_path, capsys, instant, name, damage, needles):
    run = _finished_comparison(tmp_path, capsys)
    (run / name).write_text(damage)
    assert main(["compare", "--protocol", str(tmp_path / "p.toml")]) == 2
    one_line_error(capsys, str(run / name), *needles)


@pytest.mark.parametrize(
    "damage,needle", [('{"A": {"value": 2.', "not valid JSON"), ('{"A": {"value": 0, "source": "bench"}}', "value 0")]
)
def test_a_broken_cost_ratio_file_is_named_in_one_line(tmp_path, capsys, instant, damage, needle):
    sized = protocol(tmp_path, "p.toml", arms='["baseline", "proposed", "baseline-equal-time"]')
    assert main(["compare", "--protocol", str(sized)]) == 0
    path = tmp_path / "cmp" / "cost_ratio.json"
    assert json.loads(path.read_text())["A"]["value"] == 2.0
    path.write_text(damage)
    capsys.readouterr()
    assert main(["compare", "--protocol", str(sized)]) == 2
    one_line_error(capsys, str(path), needle)


def test_compare_out_that_is_a_file_is_one_line_naming_it(tmp_path, capsys, instant):
    (tmp_path / "cmp").write_text("a file")
    assert main(["compare", "--protocol", str(protocol(tmp_path, "p.toml"))]) == 2
    one_line_error(capsys, f"{tmp_path / 'cmp'} exists and is not a directory")
    assert (tmp_path / "cmp").read_text() == "a file"


def test_a_full_disk_while_writing_a_figure_names_it(tmp_path, finished_run, monkeypatch, capsys):
    from matplotlib.figure import Figure

    def full_disk(self, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    out = tmp_path / "run"
    shutil.copytree(finished_run, out)  # a finished tiny run, trained once for the module
    monkeypatch.setattr(Figure, "savefig", full_disk)
    capsys.readouterr()
    assert main(["report", str(out), "--out", str(tmp_path / "r.png")]) == 2
    one_line_error(capsys, f"could not write {tmp_path / 'r.png'}", "No space left on device")
    assert main(["show", str(out), "--out", str(tmp_path / "s.png"), "--cache-dir", str(tmp_path / "cache")]) == 2
    one_line_error(capsys, f"could not write {tmp_path / 's.png'}", "No space left on device")


def test_a_refused_non_finite_save_does_not_claim_a_checkpoint_that_does_not_exist(tmp_path, monkeypatch, capsys):
    import lossaug.run.parts as run_parts  # where RunParts.save checks the state

    monkeypatch.setattr(run_parts, "state_is_finite", lambda model, optimizer: False)
    out = tmp_path / "run"
    assert main(["train", *tiny(tmp_path), "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert "not finite" in err and "is kept" not in err and f"no checkpoint in {out} yet" in err, err


def test_resume_and_overwrite_together_are_refused_before_anything_is_removed(tmp_path, finished_run, capsys):
    out = tmp_path / "run"
    shutil.copytree(finished_run, out)  # a finished tiny run, trained once for the module
    before = {p.name: p.read_bytes() for p in run_files(out)}
    capsys.readouterr()
    assert main(["train", "--resume", str(out), "--overwrite"]) == 2
    one_line_error(capsys, "exclude each other", str(out))
    assert {p.name: p.read_bytes() for p in run_files(out)} == before
