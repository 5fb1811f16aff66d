"""The networks: output shapes at any width and channel count, the smallest image each accepts, and a CPU smoke
run of the fast ResNet (it learns) through the public training API."""

import pytest
import torch
import torch.nn.functional as F

from lossaug.models import DEFAULT_WIDTHS, MIN_IMAGE_SIZE, MODELS, RECIPES, FastResNet, build_model
from lossaug.run.train import TrainConfig

ALL = sorted(MIN_IMAGE_SIZE)  # the image models (audio_cnn takes waveforms: tests/test_audio.py)


def test_every_model_has_a_default_width_and_a_minimum_size():
    assert set(DEFAULT_WIDTHS) == set(MODELS) and set(MIN_IMAGE_SIZE) == set(MODELS) - {"audio_cnn"}
    assert DEFAULT_WIDTHS["fast_resnet"] == 64


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("width", [1, 3, 8])
@pytest.mark.parametrize("in_channels", [1, 3])
def test_logits_shape_for_any_width_and_channel_count(name, width, in_channels):
    model = build_model(name, num_classes=7, in_channels=in_channels, width=width)
    logits = model(torch.randn(2, in_channels, 32, 32))
    assert logits.shape == (2, 7) and logits.dtype == torch.float32 and torch.isfinite(logits).all()


@pytest.mark.parametrize("name", ALL)
def test_minimum_image_size_works_and_one_less_fails(name):
    side = MIN_IMAGE_SIZE[name]
    model = build_model(name, num_classes=3, width=2)
    assert model(torch.randn(2, 3, side, side)).shape == (2, 3)  # training mode: BatchNorm sees 2 values
    model.eval()
    assert model(torch.randn(1, 3, side, side)).shape == (1, 3)
    with pytest.raises(RuntimeError):
        model(torch.randn(2, 3, side - 1, side - 1))


def test_fast_resnet_layout_and_parameter_count():
    model = FastResNet(num_classes=10)
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [c.out_channels for c in convs] == [64, 128, 128, 128, 256, 512, 512, 512]  # 8 convs + linear: 9 layers
    assert model.linear.bias is None and model.linear.in_features == 512
    assert sum(p.numel() for p in model.parameters()) == 6_573_120
    # width scales every stage: a quarter of the width, a sixteenth of the conv weights
    small = FastResNet(num_classes=10, width=16)
    assert [c.out_channels for c in small.modules() if isinstance(c, torch.nn.Conv2d)][-1] == 128


def test_fast_resnet_output_scale_keeps_initial_logits_small():
    torch.manual_seed(0)
    logits = FastResNet(num_classes=10, width=8)(torch.randn(16, 3, 32, 32))
    assert logits.abs().max() < 1.0  # near-uniform softmax at init


def test_fast_resnet_recipe_names_train_config_fields():
    recipe = RECIPES["fast_resnet"]
    known = set(TrainConfig.__dataclass_fields__) | {"label_smoothing"}  # label_smoothing: being added to the config
    assert set(recipe) <= known
    assert recipe["batch_size"] >= 256 and 0 < recipe["label_smoothing"] < 1 and recipe["epochs"] <= 20


def test_fast_resnet_training_steps_lower_the_loss_on_a_fixed_batch():
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(32, 3, 16, 16, generator=generator)
    labels = torch.randint(0, 4, (32,), generator=generator)
    torch.manual_seed(0)
    model = build_model("fast_resnet", num_classes=4, width=4)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.2, momentum=0.9, nesterov=True)
    losses = []
    for _ in range(8):
        loss = F.cross_entropy(model(images), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.8 * losses[0]
    assert all(p.grad is not None for p in model.parameters())


@pytest.fixture
def one_thread():
    # On the shared 2-core machine, 2 torch threads made this run 5-7x slower (62 s against 9 s, measured).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.slow
def test_fast_resnet_smoke_learns_mini_cifar_on_the_cpu(tmp_path, one_thread):
    """The smoke run of benchmarks/fast_resnet_cpu.py (which times it; a timed test would fail on a busy box)."""
    from lossaug.run.train import train

    config = TrainConfig(
        dataset="mini",
        cache_dir=str(tmp_path),
        model="fast_resnet",
        width=8,
        method="baseline",
        epochs=3,
        train_size=1000,
        batch_size=64,
        lr=0.4,
        warmup_epochs=0.5,
        eval_every=3,
        device="cpu",
    )
    result = train(config)
    # 2-core AMD EPYC, one thread: test error 0.70-0.72 (chance is 0.90), 8-10 s of training.
    assert result.test_error < 0.8, result.test_error
    assert len(result.metrics) == 3 and result.seconds > 0
