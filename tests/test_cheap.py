"""Cheaper selection: select_from, select_every, proxy scoring; each does what it says."""

import pytest
import torch

from lossaug.augment import parse_augment
from lossaug.models import Normalized, build_model
from lossaug.run.train import TrainConfig, selects_at, train, train_step, validate_config
from lossaug.selection import make_candidates, select_candidates

# 256 images / batch 32 = 8 steps per epoch, 16 in all.
TINY = dict(dataset="mini", train_size=256, model="cnn", width=4, epochs=2, batch_size=32, lr=0.05, device="cpu")


def scored_steps(config: TrainConfig) -> list[int]:
    """1-based steps at which candidates were scored (M > 1 and the model ran)."""
    scored = []

    def on_step(step, selection):
        if selection.probs.shape[1] > 1:
            assert selection.scored and not torch.isnan(selection.scores).any()
            scored.append(step)
        else:
            assert not selection.scored and selection.scores is None

    train(config, on_step=on_step)
    return scored


def test_select_every_3_scores_exactly_one_step_in_three():
    assert scored_steps(TrainConfig(**TINY, select_every=3)) == [1, 4, 7, 10, 13, 16]


def test_select_from_half_scores_nothing_in_the_first_half():
    assert scored_steps(TrainConfig(**TINY, select_from=0.5)) == list(range(9, 17))
    assert scored_steps(TrainConfig(**TINY, select_from=0.5, select_every=2)) == [9, 11, 13, 15]


def test_selects_at_rules():
    config = TrainConfig(select_from=0.25, select_every=2)
    assert [selects_at(config, step, 16) for step in range(8)] == [False] * 4 + [True, False, True, False]
    assert not selects_at(TrainConfig(method="baseline"), 0, 16)


def test_telemetry_counts_only_selected_images():
    result = train(TrainConfig(**TINY, select_every=2))
    record = result.metrics[0]
    assert record["selected_fraction"] == 0.5
    assert 0 < record["entropy"] <= torch.log(torch.tensor(4.0)).item() + 1e-6


def test_proxy_never_receives_gradients_from_the_main_loss():
    torch.manual_seed(0)
    model = Normalized(build_model("cnn", 10, 3, 4), (0.5,) * 3, (0.2,) * 3)
    proxy = Normalized(build_model("cnn", 10, 3, 2), (0.5,) * 3, (0.2,) * 3)
    images, labels = torch.randint(0, 256, (8, 3, 16, 16), dtype=torch.uint8), torch.arange(8) % 10
    candidates = make_candidates(images, parse_augment("flip,crop"), 4, generator=torch.Generator().manual_seed(0))
    selection = select_candidates(proxy, candidates, labels, generator=torch.Generator().manual_seed(1))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    proxy_optimizer = torch.optim.SGD(proxy.parameters(), lr=0.1)
    proxy_before = {k: v.clone() for k, v in proxy.state_dict().items()}

    train_step(model, optimizer, selection.inputs, labels, torch.device("cpu"))
    assert all(p.grad is None for p in proxy.parameters()), "the main loss reached the proxy"
    assert all(torch.equal(v, proxy.state_dict()[k]) for k, v in proxy_before.items())

    model_grads = [p.grad.clone() for p in model.parameters()]
    train_step(proxy, proxy_optimizer, selection.inputs, labels, torch.device("cpu"))
    assert all(p.grad is not None for p in proxy.parameters())
    assert all(torch.equal(g, p.grad) for g, p in zip(model_grads, model.parameters(), strict=True))


@pytest.mark.slow  # ~6 s: three proxy runs
def test_proxy_run_resumes_bit_for_bit(tmp_path, resume_after_crash):
    config = TrainConfig(**TINY, proxy_model="cnn", proxy_width=2, checkpoint_every=3, out=str(tmp_path / "run"))
    reference = train(TrainConfig(**{**TINY, "seed": 0}, proxy_model="cnn", proxy_width=2))

    resumed = resume_after_crash(config, at_step=5)
    for key, value in reference.model.state_dict().items():
        assert torch.equal(value, resumed.model.state_dict()[key]), key
    # the proxy changes what is selected: a run with it differs from one without
    plain = train(TrainConfig(**TINY))
    assert not torch.equal(
        plain.model.state_dict()["net.linear.weight"], resumed.model.state_dict()["net.linear.weight"]
    )


@pytest.mark.parametrize(
    "change,match",
    [
        (dict(select_every=0), "select_every must be >= 1"),
        (dict(select_from=1.0), r"select_from must be in \[0, 1\)"),
        (dict(proxy_model="tiny"), "unknown proxy_model 'tiny'"),
        (dict(compile_scoring="maybe"), "unknown compile_scoring 'maybe'"),
    ],
)
def test_bad_cheap_options(change, match):
    with pytest.raises(ValueError, match=match):
        validate_config(TrainConfig(**{**TINY, **change}))


@pytest.mark.slow  # torch.compile, ~20 s on 2 cores
def test_compiled_scoring_gives_the_same_selection_probabilities():
    """torch.compile of the scoring model (~30 s of compilation on 2 CPU cores) scores like the eager model."""
    config = dict(**{**TINY, "epochs": 1, "train_size": 64}, checkpoint_every=0)
    eager, compiled = [], []
    train(TrainConfig(**config), on_step=lambda step, sel: eager.append(sel.probs.clone()))
    train(TrainConfig(**config, compile_scoring="on"), on_step=lambda step, sel: compiled.append(sel.probs.clone()))
    assert len(eager) == len(compiled) == 2
    assert torch.allclose(eager[0], compiled[0], atol=1e-4)
