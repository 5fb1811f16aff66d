"""Tests of the pieces that connect lossaug to other tools: MultiView with DataLoader workers, the Lightning
callback, and ``lossaug show``."""

import importlib
import random
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader

import lossaug
from lossaug.cli import main
from lossaug.data import MultiView, view_seed

# ---------------------------------------------------------------- MultiView


class PilCropFlip:
    """A torchvision-v1-style transform: PIL in, PIL out, randomness from Python's global ``random``."""

    def __call__(self, image: Image.Image) -> Image.Image:
        left, top = random.randint(0, 8), random.randint(0, 8)
        crop = image.crop((left, top, left + 24, top + 24))
        return crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT) if random.random() < 0.5 else crop


class NumpyJitter:
    """Draws from NumPy's global generator and returns an (H,W,C) uint8 array."""

    def __call__(self, image: Image.Image) -> np.ndarray:
        array = np.asarray(image).astype(np.int16) + np.random.randint(-20, 21, size=(1, 1, 3))
        return np.clip(array, 0, 255).astype(np.uint8)


class RngCrop:
    """Takes its random source as an ``rng`` keyword (a ``random.Random``)."""

    def __call__(self, image: Image.Image, rng: random.Random) -> Image.Image:
        left = rng.randint(0, 8)
        return image.crop((left, left, left + 24, left + 24))


class TorchNoise:
    """Draws from torch's global generator; tensor in (via PIL), float (C,H,W) tensor out."""

    def __call__(self, image: Image.Image) -> torch.Tensor:
        tensor = torch.from_numpy(np.array(image)).permute(2, 0, 1).float()
        return tensor + torch.randn(tensor.shape)


def albumentations_style(*, image: np.ndarray) -> dict:
    """Called as ``t(image=array)`` on an (H,W,C) array, returns a dict, like an albumentations transform."""
    return {"image": image[:, ::-1] if np.random.rand() < 0.5 else image}


def pil_items(count: int = 12) -> list:
    rng = np.random.default_rng(0)
    return [(Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)), i % 3) for i in range(count)]


def load_all(dataset: MultiView, num_workers: int, **loader_kwargs) -> tuple[torch.Tensor, torch.Tensor]:
    loader = DataLoader(dataset, batch_size=4, num_workers=num_workers, **loader_kwargs)
    batches = list(loader)
    return torch.cat([views for views, _ in batches]), torch.cat([targets for _, targets in batches])


def test_multiview_with_workers_shapes_reproducibility_and_epochs():
    dataset = MultiView(pil_items(), PilCropFlip(), 4, seed=1)
    views, targets = load_all(dataset, num_workers=2)
    assert views.shape == (12, 4, 3, 24, 24) and views.dtype == torch.uint8
    assert targets.tolist() == [i % 3 for i in range(12)]
    # The M views of an image differ (4 draws of 9x9 offsets and a flip: a repeat within all 12 images is unlikely)
    for image_views in views:
        assert len({v.numpy().tobytes() for v in image_views}) > 1
    # Same (seed, epoch, index): identical views whatever the worker count, and across runs.
    same, _ = load_all(MultiView(pil_items(), PilCropFlip(), 4, seed=1), num_workers=0)
    assert torch.equal(views, same)
    # Another epoch, or another seed: different views.
    dataset.set_epoch(1)
    next_epoch, _ = load_all(dataset, num_workers=2)
    assert not torch.equal(views, next_epoch)
    other_seed, _ = load_all(MultiView(pil_items(), PilCropFlip(), 4, seed=2), num_workers=0)
    assert not torch.equal(views, other_seed)


def test_multiview_epoch_reaches_persistent_workers():
    dataset = MultiView(pil_items(8), PilCropFlip(), 2, seed=0)
    loader = DataLoader(dataset, batch_size=4, num_workers=2, persistent_workers=True)
    first = torch.cat([views for views, _ in loader])
    dataset.set_epoch(3)
    later = torch.cat([views for views, _ in loader])
    reference = MultiView(pil_items(8), PilCropFlip(), 2, seed=0)
    reference.set_epoch(3)
    assert not torch.equal(first, later)
    assert torch.equal(later, torch.stack([reference[i][0] for i in range(8)]))


@pytest.mark.parametrize(
    "transform, shape, dtype",
    [
        (NumpyJitter(), (3, 32, 32), torch.uint8),
        (RngCrop(), (3, 24, 24), torch.uint8),
        (TorchNoise(), (3, 32, 32), torch.float32),
        (albumentations_style, (3, 32, 32), torch.uint8),
    ],
)
def test_multiview_transform_kinds_are_seeded_and_leave_global_state(transform, shape, dtype):
    dataset = MultiView(pil_items(2), transform, 6, seed=0)
    random.seed(5)
    np.random.seed(5)
    torch.manual_seed(5)
    states = random.getstate(), np.random.get_state()[1].copy(), torch.get_rng_state()
    views, target = dataset[1]
    assert views.shape == (6, *shape) and views.dtype == dtype and target == 1
    assert len({v.numpy().tobytes() for v in views}) > 1
    assert torch.equal(views, dataset[1][0])
    assert random.getstate() == states[0]
    assert np.array_equal(np.random.get_state()[1], states[1])
    assert torch.equal(torch.get_rng_state(), states[2])


def test_view_seed_is_a_hash_without_arithmetic_collisions():
    # 1000 * seed + epoch style schemes collide here; a hash does not.
    assert view_seed(1, 0, 0, 0) != view_seed(0, 1000, 0, 0)
    seeds = {view_seed(s, e, i, m) for s in range(3) for e in range(3) for i in range(20) for m in range(4)}
    assert len(seeds) == 3 * 3 * 20 * 4 and all(0 <= s < 2**63 for s in seeds)


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: MultiView(pil_items(1), PilCropFlip(), 0), "num_candidates"),
        (lambda: MultiView(pil_items(1), "flip", 2), "transform must be callable"),
        (lambda: MultiView(pil_items(1), PilCropFlip(), 2).set_epoch(-1), "epoch"),
        (lambda: MultiView([(1, 2, 3)], PilCropFlip(), 2)[0], "item 0 must be an .image, target. pair"),
        (lambda: MultiView([("x", 0)], lambda image: image, 2)[0], "item 0 view 0: the transform returned a str"),
    ],
)
def test_multiview_bad_input_names_the_culprit(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_multiview_batch_feeds_select_candidates():
    dataset = MultiView(pil_items(8), PilCropFlip(), 4, seed=0)
    views, targets = next(iter(DataLoader(dataset, batch_size=8, num_workers=0)))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = lossaug.models.Normalized(lossaug.models.SmallCNN(3, width=4), [0.5] * 3, [0.25] * 3)
    selection = lossaug.select_candidates(model, views, targets, generator=torch.Generator().manual_seed(0))
    assert selection.inputs.shape == (8, 3, 24, 24)
    assert torch.equal(selection.inputs, views[torch.arange(8), selection.index])
    assert selection.scores.shape == (8, 4) and torch.isfinite(selection.scores).all()


# ---------------------------------------------------------------- Lightning


@pytest.mark.slow  # subprocess: a fresh interpreter
def test_importing_lossaug_does_not_import_lightning():
    code = "import sys, lossaug, lossaug.data, lossaug.cli; sys.exit('lightning' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], timeout=120).returncode == 0


def test_lossaug_lightning_without_lightning_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "lightning", None)
    monkeypatch.setitem(sys.modules, "lightning.pytorch", None)
    monkeypatch.delitem(sys.modules, "lossaug.lightning", raising=False)
    with pytest.raises(ImportError, match="pip install lightning"):
        importlib.import_module("lossaug.lightning")


MARKER = 7  # the last input feature: 0 in the raw data, 1..M in the candidates


def mark_candidates(inputs: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """Noise on the features and a candidate marker in the last one, so training_step can tell a candidate."""
    noisy = inputs + 0.1 * torch.randn(inputs.shape, generator=generator)
    marker = torch.randint(1, 5, (len(inputs),), generator=generator).float()
    return torch.cat([noisy[:, :MARKER], marker[:, None]], dim=1)


@pytest.fixture(scope="module")
def lightning_module_class():
    pl = pytest.importorskip("lightning.pytorch")

    class Tiny(pl.LightningModule):
        def __init__(self):
            super().__init__()
            self.net = nn.Sequential(nn.Linear(8, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Dropout(0.1), nn.Linear(16, 3))
            self.seen_markers: list[torch.Tensor] = []
            self.training_flags: list[bool] = []

        def forward(self, inputs):
            return self.net(inputs)

        def training_step(self, batch, batch_idx):
            inputs, targets = batch
            self.seen_markers.append(inputs[:, MARKER].clone())
            self.training_flags.append(self.training)
            return F.cross_entropy(self(inputs), targets)

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    return Tiny


def tiny_loader() -> DataLoader:
    generator = torch.Generator().manual_seed(0)
    inputs = torch.randn(64, 8, generator=generator)
    inputs[:, MARKER] = 0
    dataset = torch.utils.data.TensorDataset(inputs, torch.randint(0, 3, (64,), generator=generator))
    return DataLoader(dataset, batch_size=16)


# Lightning 2.6 trips over a torch 2.13 pytree deprecation on every fit; not ours to fix.
@pytest.mark.filterwarnings("ignore:.*LeafSpec")
def test_lightning_callback_trains_on_selected_candidates(lightning_module_class):
    pl = pytest.importorskip("lightning.pytorch")
    from lossaug.lightning import LossAwareSelection

    callback = LossAwareSelection(lossaug.LossAwareAugment(mark_candidates, num_candidates=4), seed=3)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        module = lightning_module_class()
    trainer = pl.Trainer(
        accelerator="cpu",
        max_steps=3,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[callback],
    )
    trainer.fit(module, tiny_loader())
    assert callback.steps == 3 and callback.last_selection.probs.shape == (16, 4)
    # training_step saw candidates (marker 1..4), never the raw inputs (marker 0), in training mode.
    assert len(module.seen_markers) == 3 and all(m.min() >= 1 for m in module.seen_markers)
    assert module.training_flags == [True, True, True]
    # Scoring ran in eval mode: BatchNorm counted only the 3 training forwards, not the 3 scoring passes.
    assert int(module.net[1].num_batches_tracked) == 3
    entropy = float(trainer.callback_metrics["selection_entropy"])
    assert 0 < entropy <= np.log(4) + 1e-6


def test_lightning_callback_leaves_the_model_untouched_and_is_seeded(lightning_module_class):
    pytest.importorskip("lightning.pytorch")
    from lossaug.lightning import LossAwareSelection

    class FakeTrainer:
        global_rank, current_epoch = 0, 0

    module = lightning_module_class()
    module.log = lambda *args, **kwargs: None  # outside a Trainer, Lightning's log has nowhere to go
    module.train()
    before = {k: v.clone() for k, v in module.state_dict().items()}
    chosen = []
    for rank in (0, 0, 1):
        FakeTrainer.global_rank = rank
        inputs, targets = next(iter(tiny_loader()))
        batch = [inputs, targets]
        LossAwareSelection(lossaug.LossAwareAugment(mark_candidates), seed=3).on_train_batch_start(
            FakeTrainer(), module, batch, 0
        )
        chosen.append(batch[0])
    assert all(torch.equal(v, module.state_dict()[k]) for k, v in before.items())
    assert all(m.training for m in module.modules())
    assert torch.equal(chosen[0], chosen[1])  # same (seed, rank, epoch, batch): same draws
    assert not torch.equal(chosen[0], chosen[2])  # another rank draws differently
    with pytest.raises(ValueError, match="must be a list or dict"):
        LossAwareSelection("flip").on_train_batch_start(FakeTrainer(), module, (inputs, targets), 0)


# ---------------------------------------------------------------- lossaug show


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    from lossaug.run.train import TrainConfig, train

    out = tmp_path_factory.mktemp("run") / "proposed"
    config = TrainConfig(
        dataset="mini", train_size=128, model="cnn", width=4, epochs=1, batch_size=64, device="cpu", out=str(out)
    )
    train(config)
    return out


def test_show_writes_a_png_from_a_checkpoint(tiny_run, tmp_path, monkeypatch):
    monkeypatch.setenv("LOSSAUG_CACHE", str(tmp_path / "cache"))
    png = tmp_path / "show" / "grid.png"
    argv = ["show", str(tiny_run / "checkpoint.pt"), "--out", str(png), "--images", "3", "--candidates", "2"]
    assert main(argv) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert main(["show", str(tiny_run), "--out", str(tmp_path / "from-dir.png")]) == 0


def test_show_scores_match_the_model(tiny_run):
    from lossaug.show import load_run, score_examples

    run = load_run(tiny_run / "checkpoint.pt")
    grid = score_examples(run, num_images=3, num_candidates=2, seed=0)
    assert grid.candidates.shape == (3, 2, 3, 32, 32) and grid.temperature == 1.0 and grid.note == ""
    assert torch.allclose(grid.probs.sum(dim=1), torch.ones(3))
    expected = lossaug.score_candidates(run.model, grid.candidates, grid.targets)
    assert torch.allclose(grid.scores, expected)
    assert torch.equal(grid.candidates, score_examples(run, num_images=3, num_candidates=2, seed=0).candidates)


def test_show_errors_are_one_line_and_exit_2(tmp_path, capsys):
    assert main(["show", str(tmp_path / "missing.pt")]) == 2
    assert "missing.pt does not exist" in capsys.readouterr().err
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    assert main(["show", str(junk)]) == 2
    err = capsys.readouterr().err
    assert "junk.pt" in err and len(err.strip().splitlines()) == 1
