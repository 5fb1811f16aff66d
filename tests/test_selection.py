"""Tests of candidate generation, scoring, probabilities, sampling and the one-object form."""

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import lossaug
from lossaug import augment as A
from lossaug.selection import make_candidates, sample_index, score_candidates, select_candidates, selection_probs


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


class TinyNet(nn.Module):
    """Conv-BN-ReLU-Dropout-linear: has every kind of state scoring must leave alone."""

    def __init__(self, num_classes: int = 5):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.drop = nn.Dropout(0.5)
        self.head = nn.Linear(4, num_classes)

    def forward(self, x):
        x = F.relu(self.bn(self.conv(x.float())))
        return self.head(self.drop(x.mean(dim=(2, 3))))


def trained_net(seed: int = 0) -> TinyNet:
    """A TinyNet whose BatchNorm running statistics are no longer the defaults."""
    torch.manual_seed(seed)
    net = TinyNet()
    net(torch.randn(16, 3, 8, 8) * 3 + 1)
    return net


def snapshot(model: nn.Module):
    return (
        {k: v.clone() for k, v in model.state_dict().items()},
        [m.training for m in model.modules()],
        {k: p.requires_grad for k, p in model.named_parameters()},
    )


# ---------------------------------------------------------------- make_candidates


def test_make_candidates_shape_and_each_row_comes_from_its_image():
    images = torch.randn(6, 3, 8, 8)
    candidates = make_candidates(images, A.HorizontalFlip(), 5, generator=gen(0))
    assert candidates.shape == (6, 5, 3, 8, 8)
    for b in range(6):
        for m in range(5):
            assert torch.equal(candidates[b, m], images[b]) or torch.equal(candidates[b, m], images[b].flip(-1))


def test_make_candidates_draws_independently_per_candidate():
    images = torch.randn(1, 3, 8, 8)
    candidates = make_candidates(images, A.RandomCrop(4), 32, generator=gen(0))
    assert len({tuple(c.flatten().tolist()) for c in candidates[0]}) > 10


def test_make_candidates_rejects_zero_candidates():
    with pytest.raises(ValueError, match="num_candidates must be >= 1, got 0"):
        make_candidates(torch.zeros(2, 3, 4, 4), A.HorizontalFlip(), 0)


# ---------------------------------------------------------------- score_candidates


def test_loss_and_error_scores_match_a_per_candidate_loop():
    net = trained_net().eval()
    candidates = torch.randn(4, 3, 3, 8, 8)
    targets = torch.tensor([0, 4, 2, 1])
    loss = score_candidates(net, candidates, targets)
    error = score_candidates(net, candidates, targets, score="error")
    for b in range(4):
        for m in range(3):
            logits = net(candidates[b, m : m + 1])
            expected = F.cross_entropy(logits, targets[b : b + 1])
            assert torch.allclose(loss[b, m], expected, atol=1e-5)
            p_true = torch.softmax(logits, 1)[0, targets[b]]
            assert torch.allclose(error[b, m], 1 - p_true, atol=1e-5)


@pytest.mark.parametrize("bn", ["eval", "batch"])
@pytest.mark.parametrize("mode", ["train", "eval", "mixed"])
@pytest.mark.parametrize("grad_enabled", [True, False])
def test_scoring_leaves_model_and_grad_mode_exactly_as_they_were(bn, mode, grad_enabled):
    net = trained_net()
    net.train(mode == "train")
    if mode == "mixed":
        net.train()
        net.drop.eval()
    net.conv.weight.requires_grad_(False)
    before = snapshot(net)
    with torch.set_grad_enabled(grad_enabled):
        scores = score_candidates(net, torch.randn(4, 3, 3, 8, 8) * 2, torch.tensor([0, 1, 2, 3]), bn=bn)
        assert torch.is_grad_enabled() == grad_enabled
    after = snapshot(net)
    assert before[0].keys() == after[0].keys()
    for key in before[0]:
        assert torch.equal(before[0][key], after[0][key]), key
    assert before[1:] == after[1:]
    assert net.bn.track_running_stats
    assert not scores.requires_grad


def test_scoring_restores_state_when_the_model_raises():
    net = trained_net().train()

    class Boom(nn.Module):
        def forward(self, x):
            raise RuntimeError("boom")

    model = nn.Sequential(net, Boom())
    with pytest.raises(RuntimeError, match="boom"):
        score_candidates(model, torch.randn(2, 2, 3, 8, 8), torch.tensor([0, 1]), bn="batch")
    assert all(m.training for m in model.modules())
    assert net.bn.track_running_stats


def test_bn_modes_use_running_or_batch_statistics_and_dropout_is_off():
    net = trained_net().train()
    candidates = torch.randn(3, 4, 3, 8, 8) * 2 + 1
    targets = torch.tensor([0, 1, 2])
    flat = candidates.flatten(0, 1)
    flat_targets = targets.repeat_interleave(4)

    eval_reference = F.cross_entropy(copy.deepcopy(net).eval()(flat), flat_targets, reduction="none")
    batch_net = copy.deepcopy(net).train()
    batch_net.drop.eval()
    batch_reference = F.cross_entropy(batch_net(flat), flat_targets, reduction="none")

    eval_scores = score_candidates(net, candidates, targets, bn="eval")
    batch_scores = score_candidates(net, candidates, targets, bn="batch")
    assert torch.allclose(eval_scores.flatten(), eval_reference, atol=1e-5)
    assert torch.allclose(batch_scores.flatten(), batch_reference, atol=1e-5)
    assert not torch.allclose(eval_scores, batch_scores)
    assert torch.equal(batch_scores, score_candidates(net, candidates, targets, bn="batch"))  # no dropout noise


def test_chunked_scoring_equals_one_pass():
    net = trained_net().eval()
    candidates, targets = torch.randn(5, 3, 3, 8, 8), torch.tensor([0, 1, 2, 3, 4])
    whole = score_candidates(net, candidates, targets)
    for chunk_size in (1, 4, 15, 100):
        assert torch.allclose(score_candidates(net, candidates, targets, chunk_size=chunk_size), whole, atol=1e-6)


def test_bfloat16_autocast_scores_are_close():
    net = trained_net().eval()
    candidates, targets = torch.randn(4, 2, 3, 8, 8), torch.tensor([0, 1, 2, 3])
    exact = score_candidates(net, candidates, targets)
    low = score_candidates(net, candidates, targets, autocast_dtype=torch.bfloat16)
    assert low.dtype == torch.float32
    assert torch.allclose(low, exact, rtol=0.05, atol=0.05)


def test_custom_loss_fn_scores_a_regression_task():
    torch.manual_seed(0)
    model = nn.Linear(4, 2)
    candidates = torch.randn(3, 5, 4)
    targets = torch.randn(3, 2)

    def squared_error(outputs, targets):
        return ((outputs - targets) ** 2).sum(dim=1)

    scores = score_candidates(model, candidates, targets, loss_fn=squared_error)
    expected = ((model(candidates) - targets.unsqueeze(1)) ** 2).sum(-1)
    assert torch.allclose(scores, expected, atol=1e-5)
    selection = select_candidates(model, candidates, targets, loss_fn=squared_error, generator=gen(0))
    assert selection.inputs.shape == (3, 4)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(score="margin"), "unknown score 'margin'"),
        (dict(bn="frozen"), "unknown bn mode 'frozen'"),
        (dict(targets=torch.tensor([0, 1])), "3 images but targets hold 2"),
        (dict(targets=torch.tensor([0, 7, 1])), "target 7 at row 1 is out of range for 5 classes"),
        (dict(targets=torch.tensor([0, -1, 1])), "target -1 at row 1"),
        (dict(targets=torch.tensor([0.0, 1.0, 1.0])), "integer class indices"),
        (dict(chunk_size=0), "chunk_size"),
        (dict(loss_fn=lambda out, t: out), r"one value per candidate, shape \(6,\)"),
    ],
)
def test_bad_scoring_arguments_raise_value_error(kwargs, match):
    kwargs = {"targets": torch.tensor([0, 1, 2]), **kwargs}
    with pytest.raises(ValueError, match=match):
        score_candidates(trained_net(), torch.randn(3, 2, 3, 8, 8), **kwargs)


# ---------------------------------------------------------------- selection_probs


def test_probs_are_proportional_to_scores_at_temperature_one():
    scores = torch.tensor([[1.0, 2.0, 3.0, 4.0], [0.5, 0.0, 0.5, 1.0]])
    probs = selection_probs(scores)
    assert torch.allclose(probs, scores / scores.sum(1, keepdim=True))


def test_temperature_limits():
    scores = torch.tensor([[1.0, 3.0, 3.0, 2.0], [5.0, 1.0, 1.0, 1.0]])
    assert torch.equal(selection_probs(scores, 0.0), torch.tensor([[0, 0.5, 0.5, 0], [1.0, 0, 0, 0]]))
    assert torch.equal(selection_probs(scores, math.inf), torch.full((2, 4), 0.25))
    half = selection_probs(scores, 0.5)
    assert torch.allclose(half, scores**2 / (scores**2).sum(1, keepdim=True))
    # a tiny temperature approaches argmax without overflow
    assert torch.allclose(selection_probs(scores * 100, 1e-4), selection_probs(scores, 0.0))
    assert torch.allclose(selection_probs(scores, 1e6), torch.full((2, 4), 0.25), atol=1e-5)


def test_uniform_mix_blends_in_uniform():
    probs = selection_probs(torch.tensor([[1.0, 0.0, 0.0, 0.0]]), 1.0, uniform_mix=0.2)
    assert torch.allclose(probs, torch.tensor([[0.85, 0.05, 0.05, 0.05]]))


def test_degenerate_rows_fall_back_to_uniform_and_nothing_non_finite_comes_out():
    scores = torch.tensor(
        [[0.0, 0.0, 0.0], [1.0, math.nan, 2.0], [math.inf, 1.0, 1.0], [1e-30, 0.0, 0.0], [1.0, 1.0, 2.0]]
    )
    for temperature in (0.0, 0.3, 1.0, math.inf):
        probs = selection_probs(scores, temperature)
        assert torch.isfinite(probs).all()
        assert torch.allclose(probs.sum(1), torch.ones(5))
        assert torch.allclose(probs[:3], torch.full((3, 3), 1 / 3))
    assert torch.allclose(selection_probs(scores)[3], torch.tensor([1.0, 0.0, 0.0]))


def test_negative_scores_name_the_row():
    with pytest.raises(ValueError, match="row 1 has"):
        selection_probs(torch.tensor([[1.0, 2.0], [0.5, -0.1]]))


@pytest.mark.parametrize("kwargs,match", [(dict(temperature=-1.0), "temperature"), (dict(uniform_mix=1.5), "mix")])
def test_bad_probability_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        selection_probs(torch.ones(2, 3), **kwargs)


# ---------------------------------------------------------------- sampling statistics


def test_sampled_frequencies_match_probs():
    probs = torch.tensor([[0.1, 0.2, 0.3, 0.4, 0.0]]).expand(40_000, 5)
    index = sample_index(probs, generator=gen(0))
    counts = torch.bincount(index, minlength=5).float()
    assert counts[4] == 0, "a zero-probability candidate was chosen"
    expected = probs[0, :4] * 40_000
    chi_square = float(((counts[:4] - expected) ** 2 / expected).sum())
    assert chi_square < 16.27  # df=3, p=0.001


def test_sampling_follows_each_rows_own_probs():
    probs = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, 1.0, 0.0]]).repeat(1000, 1)
    assert torch.equal(sample_index(probs, generator=gen(0)), torch.tensor([0, 2, 1]).repeat(1000))


def test_select_candidates_picks_in_proportion_to_loss():
    """End to end: a model whose loss on candidate m is known; frequencies match loss / sum(loss)."""

    class KnownLoss(nn.Module):
        def forward(self, x):  # x (N,1): p(true class 0) = x, so the loss is -log(x)
            return torch.log(torch.cat([x, 1 - x], dim=1))

    p_true = torch.tensor([0.9, 0.5, 0.2, 0.05])
    candidates = p_true.view(1, 4, 1).expand(20_000, 4, 1)
    targets = torch.zeros(20_000, dtype=torch.long)
    selection = select_candidates(KnownLoss(), candidates, targets, generator=gen(1))
    loss = -torch.log(p_true)
    assert torch.allclose(selection.probs[0], loss / loss.sum(), atol=1e-5)
    counts = torch.bincount(selection.index, minlength=4).float()
    expected = loss / loss.sum() * 20_000
    assert float(((counts - expected) ** 2 / expected).sum()) < 16.27
    assert torch.equal(selection.inputs, candidates[torch.arange(20_000), selection.index])

    maxup = select_candidates(KnownLoss(), candidates[:100], targets[:100], temperature=0, generator=gen(1))
    assert (maxup.index == 3).all()


def test_fallback_rows_are_counted():
    class ConstantLogits(nn.Module):
        def forward(self, x):
            return torch.where(x.view(-1, 1) > 0, torch.tensor([[100.0, -100.0]]), torch.tensor([[math.nan, 0.0]]))

    candidates = torch.tensor([[[1.0], [1.0]], [[-1.0], [1.0]], [[1.0], [1.0]]])
    selection = select_candidates(ConstantLogits(), candidates, torch.zeros(3, dtype=torch.long), generator=gen(0))
    assert selection.fallback_rows == 3  # row 0 and 2: all-zero loss; row 1: NaN
    assert torch.allclose(selection.probs, torch.full((3, 2), 0.5))


def test_one_candidate_never_runs_the_model():
    class Forbidden(nn.Module):
        def forward(self, x):
            raise AssertionError("the model ran")

    candidates = torch.randn(3, 1, 3, 4, 4)
    selection = select_candidates(Forbidden(), candidates, torch.tensor([0, 1, 2]))
    assert torch.equal(selection.inputs, candidates[:, 0])
    assert selection.index.tolist() == [0, 0, 0] and torch.equal(selection.probs, torch.ones(3, 1))
    uniform = select_candidates(Forbidden(), torch.randn(3, 4, 2), torch.tensor([0, 1, 2]), temperature=math.inf)
    assert torch.equal(uniform.probs, torch.full((3, 4), 0.25))


# ---------------------------------------------------------------- LossAwareAugment


def test_loss_aware_augment_is_reproducible_and_trains_on_candidates():
    net = trained_net().train()
    images, targets = torch.randint(0, 256, (6, 3, 8, 8), dtype=torch.uint8), torch.arange(6) % 5
    la = lossaug.LossAwareAugment("flip,crop:2", num_candidates=4)
    first, again = la(net, images, targets, generator=gen(0)), la(net, images, targets, generator=gen(0))
    assert torch.equal(first.inputs, again.inputs) and torch.equal(first.index, again.index)
    assert first.inputs.shape == images.shape and first.inputs.dtype == torch.uint8
    assert first.probs.shape == first.scores.shape == (6, 4)
    assert torch.allclose(first.probs, selection_probs(first.scores))


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(num_candidates=0), "num_candidates must be >= 1, got 0"),
        (dict(temperature=-0.5), "temperature must be >= 0, got -0.5"),
        (dict(score="nll"), "unknown score 'nll'"),
        (dict(bn="none"), "unknown bn mode 'none'"),
        (dict(augment="flip,shear"), "unknown augmentation 'shear'"),
    ],
)
def test_loss_aware_augment_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        lossaug.LossAwareAugment(**{"augment": "flip", **kwargs})


def test_loss_aware_augment_with_a_kornia_pipeline():
    kornia = pytest.importorskip("kornia")
    pipeline = kornia.augmentation.AugmentationSequential(
        kornia.augmentation.RandomHorizontalFlip(), kornia.augmentation.RandomCrop((8, 8), padding=2)
    )
    net = trained_net().train()
    images, targets = torch.rand(5, 3, 8, 8), torch.arange(5)
    la = lossaug.LossAwareAugment(pipeline, num_candidates=3, bn="batch")
    before = snapshot(net)
    first = la(net, images, targets, generator=gen(0))
    assert first.inputs.shape == images.shape
    assert torch.equal(first.inputs, la(net, images, targets, generator=gen(0)).inputs)
    assert all(torch.equal(a, b) for a, b in zip(before[0].values(), snapshot(net)[0].values(), strict=True))
