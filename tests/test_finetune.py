"""The small-domain path (issue 14): your own network (--model PACKAGE.MODULE:FACTORY), pre-trained weights
(--init, --init-strict, --backbone-lr-scale), --classes, and settings scaled to the image size."""

import json
import sys
import textwrap

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from lossaug.cli import main
from lossaug.models import build_classifier, build_model
from lossaug.run.checkpoint import newest_valid_checkpoint
from lossaug.run.config import TrainConfig, validate_config
from lossaug.run.finetune import apply_init, read_init, sgd_groups
from lossaug.run.method import build_augment, setting_spec
from lossaug.run.train import train
from lossaug.seeds import stream_seed

FACTORY_MODULE = """
import torch
from torch import nn


def tiny(num_classes, in_channels=3, width=4):
    return nn.Sequential(
        nn.Conv2d(in_channels, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, num_classes),
    )


def head_only(num_classes):
    return nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(3, num_classes))


def not_a_module(num_classes):
    return {"num_classes": num_classes}


NOT_CALLABLE = 3
"""
BASE = dict(dataset="mini", train_size=128, epochs=1, batch_size=32, lr=0.05, device="cpu", num_candidates=2)


@pytest.fixture
def factory(tmp_path, monkeypatch):
    """A module ``user_nets`` the test writes, importable from the current directory (tmp_path)."""
    (tmp_path / "user_nets.py").write_text(textwrap.dedent(FACTORY_MODULE))
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "user_nets"
    sys.modules.pop("user_nets", None)


def cli(tmp_path, *options: str) -> list[str]:
    return ["train", "--dataset", "mini", "--train-size", "128", "--epochs", "1", "--batch-size", "32",
            "--device", "cpu", "--candidates", "2", *options]  # fmt: skip


# ---------------------------------------------------------------- your own network


def test_factory_model_trains_from_the_cli_and_gets_the_wrapper(factory, tmp_path):
    out = tmp_path / "run"
    assert main(cli(tmp_path, "--model", f"{factory}:tiny", "--width", "3", "--out", str(out))) == 0
    saved = json.loads((out / "config.json").read_text())
    assert saved["config"]["model"] == "user_nets:tiny"
    _, payload = newest_valid_checkpoint(out)
    assert payload["model"]["net.0.weight"].shape == (3, 3, 3, 3)  # width 3 reached the factory, behind Normalized
    assert {"mean", "std"} <= set(payload["model"])


@pytest.mark.parametrize(
    "model, message",
    [
        ("no_such_module:tiny", "--model no_such_module:tiny: cannot import 'no_such_module'"),
        ("user_nets:missing", "--model user_nets:missing: module 'user_nets' has no 'missing'"),
        ("user_nets:not_a_module", "--model user_nets:not_a_module returned 'dict', not a torch.nn.Module"),
        ("user_nets:NOT_CALLABLE", "'NOT_CALLABLE' is 'int', not a callable"),
        ("user_nets.tiny", "unknown model 'user_nets.tiny'"),
    ],
)
def test_bad_factory_is_a_one_line_error(factory, tmp_path, capsys, model, message):
    assert main(cli(tmp_path, "--model", model, "--out", str(tmp_path / "run"))) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1 and "Traceback" not in err


def test_factory_without_width_refuses_one(factory):
    with pytest.raises(ValueError, match="takes no width argument; drop --width 8"):
        build_model("user_nets:head_only", 10, 3, width=8)
    assert isinstance(build_model("user_nets:head_only", 10, 3), nn.Module)


def test_factory_model_in_bench_and_show(factory, tmp_path):
    from lossaug.bench import BenchConfig, run_bench
    from lossaug.show import load_run, show_candidates

    result = run_bench(BenchConfig(model="user_nets:tiny", batch_size=4, image_size=8, candidate_counts=(1, 2),
                                   repeats=1, warmup=0, device="cpu"))  # fmt: skip
    assert result.timing(2).ratio > 0
    run = train(TrainConfig(**BASE, model="user_nets:tiny", out=str(tmp_path / "run")))
    path = show_candidates(
        load_run(run.out_dir, trust_code="user_nets"), tmp_path / "show.png", num_images=2, num_candidates=2, seed=0
    )
    assert path.exists()


# ---------------------------------------------------------------- pre-trained weights


@pytest.fixture
def pretrained(factory, tmp_path):
    """A run of the factory model on 2 classes (its checkpoint is the pre-trained weights)."""
    return train(TrainConfig(**BASE, model="user_nets:tiny", classes="cat,dog", out=str(tmp_path / "pre")))


def test_init_from_a_run_changed_head_is_listed_and_kept_fresh(pretrained, tmp_path):
    out = tmp_path / "ft"
    frozen = {**BASE, "lr": 1e-12, "momentum": 0.0, "weight_decay": 0.0}
    config = TrainConfig(**frozen, model="user_nets:tiny", classes="bird,frog,ship", init=str(pretrained.out_dir),
                         out=str(out))  # fmt: skip
    result = train(config)
    report = json.loads((out / "config.json").read_text())["init"]
    assert report["shape_mismatch"] == ["5.weight (3, 4) vs (2, 4)", "5.bias (3,) vs (2,)"]
    assert "0.weight" in report["loaded"] and "1.running_mean" in report["loaded"] and not report["missing"]
    # Loaded tensors start as the pre-trained ones (lr ~ 0: what training moved is below 1e-6).
    start = pretrained.model.state_dict()["net.0.weight"]
    assert torch.allclose(result.model.state_dict()["net.0.weight"], start, atol=1e-6)
    # The head kept the fresh initialisation of this run's init stream (seed 0), not the file's.
    fresh = build_classifier("user_nets:tiny", 3, 3, None, ((0.5,) * 3, (0.25,) * 3), device=torch.device("cpu"),
                             init_seed=stream_seed(0, "init")).net  # fmt: skip
    assert torch.allclose(result.model.state_dict()["net.5.weight"], fresh[5].weight, atol=1e-6)


def test_init_from_a_plain_state_dict_file(factory, tmp_path):
    net = build_model("user_nets:tiny", 10, 3)
    path = tmp_path / "weights.pt"
    torch.save({f"module.{k}": v for k, v in net.state_dict().items()}, path)  # a DDP-style prefix is stripped
    frozen = {**BASE, "lr": 1e-12, "momentum": 0.0, "weight_decay": 0.0}
    result = train(TrainConfig(**frozen, model="user_nets:tiny", init=str(path)))
    assert torch.allclose(result.model.state_dict()["net.5.weight"], net[5].weight, atol=1e-6)


def test_init_strict_and_unusable_files_are_errors(pretrained, tmp_path, capsys):
    base = cli(tmp_path, "--model", "user_nets:tiny", "--classes", "bird,frog,ship", "--out", str(tmp_path / "ft"))
    assert main([*base, "--init", str(pretrained.out_dir), "--init-strict"]) == 2
    assert "--init-strict: " in capsys.readouterr().err
    (tmp_path / "junk.pt").write_bytes(b"not a torch file")
    assert main([*base, "--init", str(tmp_path / "junk.pt")]) == 2
    assert "junk.pt: not a readable state dict" in capsys.readouterr().err
    assert main([*base, "--init", str(tmp_path / "absent.pt")]) == 2
    assert "absent.pt: no such file" in capsys.readouterr().err
    torch.save({"other.weight": torch.zeros(2)}, tmp_path / "other.pt")
    assert main([*base, "--init", str(tmp_path / "other.pt")]) == 2
    assert "no tensor matches the model" in capsys.readouterr().err
    assert not (tmp_path / "ft" / "checkpoint.pt").exists()


def test_apply_init_reports_missing_and_unused():
    net = nn.Sequential(nn.Linear(2, 3), nn.Linear(3, 4))
    tensors = {"0.weight": torch.ones(3, 2), "extra": torch.zeros(1), "1.weight": torch.ones(5, 3)}
    report = apply_init(net, tensors, "f.pt")
    assert report.loaded == ("0.weight",) and report.unused == ("extra",)
    assert report.missing == ("0.bias", "1.bias") and report.shape_mismatch == ("1.weight (4, 3) vs (5, 3)",)
    assert torch.equal(net[0].weight, torch.ones(3, 2))
    with pytest.raises(ValueError, match="--init-strict"):
        apply_init(net, tensors, "f.pt", strict=True)


def test_backbone_lr_scale_applies_to_exactly_the_loaded_parameters(pretrained, tmp_path):
    out = tmp_path / "ft"
    config = TrainConfig(**BASE, model="user_nets:tiny", classes="bird,frog,ship", init=str(pretrained.out_dir),
                         backbone_lr_scale=0.1, out=str(out))  # fmt: skip
    train(config)
    _, payload = newest_valid_checkpoint(out)
    groups = {g["name"]: g for g in payload["optimizer"]["param_groups"]}
    # Parameters (not buffers) loaded: conv weight and bias, BN weight and bias = indices 0-3; the head is fresh.
    assert groups["backbone"]["params"] == [0, 1, 2, 3] and groups["head"]["params"] == [4, 5]
    assert groups["backbone"]["initial_lr"] == pytest.approx(0.05 * 0.1) and groups["head"]["initial_lr"] == 0.05
    assert groups["backbone"]["lr"] == pytest.approx(0.1 * groups["head"]["lr"])


def test_sgd_groups_without_init_is_one_group():
    net = nn.Linear(2, 2)
    (group,) = sgd_groups(net, (), 0.1, 0.5)
    assert group["name"] == "head" and group["lr"] == 0.1 and len(group["params"]) == 2


def test_resume_of_a_factory_model_with_init_equals_the_uninterrupted_run(pretrained, tmp_path, resume_after_crash):
    common = dict(**{**BASE, "epochs": 2}, model="user_nets:tiny", classes="bird,frog,ship",
                  init=str(pretrained.out_dir), backbone_lr_scale=0.5)  # fmt: skip
    reference = train(TrainConfig(**common, out=str(tmp_path / "straight")))
    config = TrainConfig(**common, out=str(tmp_path / "run"))
    # the init file is not read again on resume
    resumed = resume_after_crash(config, at_step=6, before_resume=(pretrained.out_dir / "checkpoint.pt").unlink)
    for key, value in reference.model.state_dict().items():
        assert torch.equal(value, resumed.model.state_dict()[key]), key


def test_init_options_need_init():
    with pytest.raises(ValueError, match="give --init PATH too"):
        validate_config(TrainConfig(backbone_lr_scale=0.1))
    with pytest.raises(ValueError, match="backbone_lr_scale must be >= 0"):
        validate_config(TrainConfig(init="x.pt", backbone_lr_scale=-1.0))


# ---------------------------------------------------------------- classes


def write_folder(root, classes, side=8, per_class=3):
    for split in ("train", "test"):
        for k, name in enumerate(classes):
            (root / split / name).mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                pixels = np.full((side, side, 3), 30 * k + i, dtype=np.uint8)
                Image.fromarray(pixels).save(root / split / name / f"{i}.png")
    return root


def test_classes_on_mini_and_on_a_folder(tmp_path):
    from lossaug.run.pipeline import prepare_data

    data = prepare_data(TrainConfig(dataset="mini", classes="truck,cat", batch_size=8), torch.device("cpu"), None)
    assert data.num_classes == 2 and len(data.train_labels) == 1000 and len(data.test_labels) == 200
    assert set(data.train_labels.tolist()) == {0, 1}
    root = write_folder(tmp_path / "folder", ["ant", "bee", "cow"])
    config = TrainConfig(dataset="folder", data=str(root), classes="cow,ant", batch_size=2)
    data = prepare_data(config, torch.device("cpu"), None)
    assert data.num_classes == 2 and len(data.train_labels) == 6
    # Relabelled in the data set's order: ant -> 0 (pixels 0..2), cow -> 1 (pixels 60..62).
    assert data.train_images[data.train_labels == 1].min() >= 60
    with pytest.raises(ValueError, match=r"classes \['dog'\] not in .*its classes: ant, bee, cow"):
        prepare_data(TrainConfig(dataset="folder", data=str(root), classes="ant,dog"), torch.device("cpu"), None)
    with pytest.raises(ValueError, match="at least 2"):
        validate_config(TrainConfig(classes="ant"))
    with pytest.raises(ValueError, match="more than once"):
        validate_config(TrainConfig(classes="ant,ant,bee"))


# ---------------------------------------------------------------- settings at the data's scale


@pytest.mark.parametrize(
    "dataset, side, setting, spec",
    [
        ("cifar10", 32, "B", "flip,crop:4,cutout:16"),
        ("cifar100", 32, "B", "flip,crop:4,cutout:8"),
        ("mini", 32, "A", "flip,crop:4"),
        ("folder", 32, "B", "flip,crop:4,cutout:16"),  # CIFAR's own ratios at CIFAR's size
        ("folder", 8, "B", "flip,crop:1,cutout:4"),
        ("folder", 224, "B", "flip,crop:28,cutout:112"),
        ("folder", 96, "A", "flip,crop:12"),
    ],
)
def test_settings_scale_with_the_image_side(dataset, side, setting, spec):
    assert setting_spec(TrainConfig(dataset=dataset, setting=setting), side) == spec


def test_oversized_explicit_augment_warns(tmp_path):
    with pytest.warns(UserWarning, match="cutout:16 can erase the whole 8-px image"):
        build_augment(TrainConfig(dataset="folder", augment="flip,cutout:16"), image_side=8)
    with pytest.warns(UserWarning, match="crop:8 can shift the 8-px image out of view"):
        build_augment(TrainConfig(dataset="folder", augment="crop:8"), image_side=8)


def test_run_records_the_scaled_setting(tmp_path):
    root = write_folder(tmp_path / "folder", ["a", "b"], side=8)
    out = tmp_path / "run"
    train(TrainConfig(dataset="folder", data=str(root), model="preact_resnet18", width=2, setting="B", epochs=1,
                      batch_size=2, device="cpu", out=str(out)))  # fmt: skip
    assert json.loads((out / "config.json").read_text())["resolved"]["augment"] == "flip,crop:1,cutout:4"


def test_read_init_rejects_a_non_dict(tmp_path):
    torch.save([torch.zeros(1)], tmp_path / "list.pt")
    with pytest.raises(ValueError, match="expected a state dict"):
        read_init(tmp_path / "list.pt")
