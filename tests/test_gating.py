"""Selection below one extra forward per candidate: stale-loss gating (``score_fraction``) and weighted candidates
(``method="weighted"``). Each must reduce to the method or the baseline where it says it does."""

import itertools
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lossaug.augment import parse_augment
from lossaug.cli import main
from lossaug.errors import InputError
from lossaug.run.train import TrainConfig, train
from lossaug.selection import CandidateWeights, LossAwareAugment, gate_rows, make_candidates

# 256 images / batch 32 = 8 steps per epoch, 16 in all.
TINY = dict(dataset="mini", train_size=256, model="cnn", width=4, epochs=2, batch_size=32, lr=0.05, device="cpu")


def weights(result) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in result.model.state_dict().items()}


def assert_same_weights(first, second) -> None:
    a, b = weights(first), weights(second)
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


# ---------------------------------------------------------------- the gate


def test_gate_rows_takes_the_highest_stale_losses_in_ascending_row_order():
    stale = torch.tensor([0.1, 5.0, math.inf, 0.3, 2.0])
    assert gate_rows(stale, 2).tolist() == [1, 2]
    assert gate_rows(stale, 3).tolist() == [1, 2, 4]
    assert gate_rows(stale, 0).tolist() == []
    assert gate_rows(stale, 9).tolist() == [0, 1, 2, 3, 4]


def test_gate_rows_breaks_ties_by_dataset_index_and_counts_nan_as_unseen():
    stale = torch.tensor([1.0, 1.0, 1.0, float("nan")])
    order = torch.tensor([30, 10, 20, 40])  # dataset indices of the rows
    assert gate_rows(stale, 2, order).tolist() == [1, 3]  # NaN first (unseen), then the smallest index among ties
    assert gate_rows(stale, 3, order).tolist() == [1, 2, 3]
    assert gate_rows(stale[:3], 1).tolist() == [0]  # no order: the row breaks the tie


def make_method(**options) -> LossAwareAugment:
    return LossAwareAugment("flip,crop:2", num_candidates=4, **options)


def net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 5))


def call(method, model, images, labels, stale, seed=0):
    generators = [torch.Generator().manual_seed(seed + k) for k in range(3)]
    return method(
        model, images.float() / 255, labels, generator=generators[0], extra_generator=generators[1],
        select_generator=generators[2], stale_losses=stale, order=torch.arange(len(labels)),
    )  # fmt: skip


@pytest.fixture
def batch():
    g = torch.Generator().manual_seed(3)
    images = torch.randint(0, 256, (12, 3, 8, 8), dtype=torch.uint8, generator=g)
    return images, torch.randint(0, 5, (12,), generator=g), torch.rand(12, generator=g)


def test_every_row_gated_is_the_ungated_selection_draw_for_draw(batch):
    images, labels, stale = batch
    model = net()
    plain = call(make_method(), model, images, labels, None)
    gated = call(make_method(score_fraction=0.99), model, images, labels, stale)  # round(0.99 * 12) = 12 rows
    assert torch.equal(plain.inputs, gated.inputs) and torch.equal(plain.index, gated.index)
    assert torch.equal(plain.probs, gated.probs) and torch.equal(plain.scores, gated.scores)
    assert bool(gated.scored_rows.all())


def test_no_row_gated_is_the_baselines_draw(batch):
    images, labels, stale = batch
    baseline = call(make_method(), net(), images, labels, None, seed=0)
    first = make_method().candidates(images.float() / 255, num_candidates=1,
                                     generator=torch.Generator().manual_seed(0))[:, 0]  # fmt: skip
    gated = call(make_method(score_fraction=0.01), net(), images, labels, stale)  # round(0.12) = 0 rows
    assert torch.equal(gated.inputs, first) and not gated.scored and not bool(gated.scored_rows.any())
    assert baseline.inputs.shape == gated.inputs.shape


def test_gated_rows_are_scored_and_the_rest_take_candidate_0(batch):
    images, labels, stale = batch
    gated = call(make_method(score_fraction=0.25), net(), images, labels, stale)
    rows = gate_rows(stale, 3)
    assert gated.scored_rows.nonzero().flatten().tolist() == rows.tolist()
    others = ~gated.scored_rows
    assert bool((gated.index[others] == 0).all()) and bool(torch.isnan(gated.scores[others]).all())
    assert bool(torch.isfinite(gated.scores[rows]).all())
    assert torch.allclose(gated.probs.sum(dim=1), torch.ones(12))


@pytest.mark.parametrize("bad", [0, 1.5, float("nan"), -0.1, True])
def test_bad_score_fractions_are_refused(bad):
    with pytest.raises(InputError, match="score_fraction must be in"):
        make_method(score_fraction=bad)


def test_gating_needs_stale_losses(batch):
    images, labels, _ = batch
    with pytest.raises(InputError, match="needs stale_losses"):
        make_method(score_fraction=0.5)(net(), images.float(), labels)


# ---------------------------------------------------------------- weighted candidates


def test_weighted_gradient_is_the_expected_sampled_gradient():
    """Exact enumeration over every choice of one candidate per image (M^B = 27 draws): the weighted loss's
    gradient equals the probability-weighted mean of the sampled steps' gradients, for the same weights (a model
    without BatchNorm, so both see the same forward)."""
    torch.manual_seed(1)
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 6), nn.Tanh(), nn.Linear(6, 4)).double()
    batch, m = 3, 3
    inputs = torch.randn(batch * m, 3, 2, 2, dtype=torch.double)
    targets = torch.tensor([0, 2, 3]).repeat_interleave(m)
    weighting = CandidateWeights(m)
    model.zero_grad()
    weighting.loss(model(inputs), targets).backward()
    weighted = [p.grad.clone() for p in model.parameters()]

    probs = weighting.probs(model(inputs), targets)[0]
    expected = [torch.zeros_like(p) for p in model.parameters()]
    candidates, labels = inputs.view(batch, m, 3, 2, 2), targets.view(batch, m)[:, 0]
    for choice in itertools.product(range(m), repeat=batch):
        chosen = torch.stack([candidates[b, c] for b, c in enumerate(choice)])
        model.zero_grad()
        F.cross_entropy(model(chosen).float(), labels).backward()
        p = math.prod(float(probs[b, c]) for b, c in enumerate(choice))
        for total, param in zip(expected, model.parameters(), strict=True):
            total += p * param.grad
    for got, want in zip(weighted, expected, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-7)  # the losses are computed in float32


def test_weighted_selection_returns_every_candidate_with_its_label(batch):
    images, labels, _ = batch
    method = make_method(mode="weighted")
    generator = torch.Generator().manual_seed(0)
    selection = method(net(), images, labels, generator=generator)
    assert selection.inputs.shape == (48, 3, 8, 8)
    assert selection.targets.tolist() == labels.repeat_interleave(4).tolist()
    expected = make_candidates(images, parse_augment("flip,crop:2"), 4, generator=torch.Generator().manual_seed(0))
    assert torch.equal(selection.inputs, expected.flatten(0, 1))
    assert selection.weighting == CandidateWeights(4)


def test_weighted_with_all_zero_losses_falls_back_to_uniform_weights():
    logits = torch.tensor([[50.0, 0.0]] * 4)  # cross-entropy ~0 for class 0: scores underflow to 0
    probs, fallback, _ = CandidateWeights(2).probs(logits, torch.zeros(4, dtype=torch.long))
    assert bool(fallback.all()) and torch.equal(probs, torch.full((2, 2), 0.5))


# ---------------------------------------------------------------- whole runs


def test_a_run_with_every_row_gated_equals_the_proposed_run():
    proposed = train(TrainConfig(**TINY))
    assert_same_weights(train(TrainConfig(**TINY, score_fraction=1.0)), proposed)
    assert_same_weights(train(TrainConfig(**TINY, score_fraction=0.99)), proposed)  # the gated path, all 32 rows


def test_a_run_that_scores_nothing_equals_the_baseline_run():
    baseline = train(TrainConfig(**{**TINY, "method": "baseline"}))
    assert_same_weights(train(TrainConfig(**TINY, score_fraction=0.01)), baseline)  # round(0.32) = 0 rows


def test_weighted_with_one_candidate_equals_the_baseline_run():
    baseline = train(TrainConfig(**{**TINY, "method": "baseline"}))
    assert_same_weights(train(TrainConfig(**{**TINY, "method": "weighted", "num_candidates": 1})), baseline)


def test_gated_run_telemetry_scores_a_quarter_of_the_batch_and_the_higher_stale_losses():
    result = train(TrainConfig(**{**TINY, "epochs": 3}, score_fraction=0.25))
    for record in result.metrics:
        assert record["selected_fraction"] == 0.25
    later = result.metrics[-1]
    assert later["stale_loss_scored"] > later["stale_loss_unscored"]


def test_weighted_run_counts_epochs_in_distinct_images():
    result = train(TrainConfig(**{**TINY, "method": "weighted", "epochs": 1}))
    config = result.config
    assert config.images_per_step() == 8
    assert len(result.metrics) == 1 and 0 < result.metrics[0]["entropy"] <= math.log(4) + 1e-6
    assert result.metrics[0]["chosen_score_ratio"] >= 1.0  # the weights lean towards the larger losses


def test_weighted_branch_from_a_baseline_trunk_counts_the_trunks_steps_in_its_own(tmp_path):
    trunk = TrainConfig(**{**TINY, "method": "baseline"}, stop_at=0.5, out=str(tmp_path / "trunk"))
    train(trunk)
    branch = TrainConfig(**{**TINY, "method": "weighted"}, branch_from=str(tmp_path / "trunk"),
                         out=str(tmp_path / "branch"))  # fmt: skip
    steps: list[int] = []
    result = train(branch, on_step=lambda step, _selection: steps.append(step))
    assert steps[0] == 8 * 4 + 1  # the trunk stopped after 8 steps of 32 images: 32 steps of 8
    assert steps[-1] == 2 * 256 // 8 and len(result.metrics) == 2


@pytest.mark.parametrize(
    "options, message",
    [
        (["--score-fraction", "0"], "score_fraction must be in (0, 1]"),
        (["--score-fraction", "1.5"], "score_fraction must be in (0, 1]"),
        (["--score-fraction", "nan"], "score_fraction must be in (0, 1]"),
        (["--score-fraction", "0.5", "--method", "baseline"], "score_fraction applies to the proposed and maxup"),
        (["--method", "weighted", "--batch-size", "30"], "must be a multiple of candidates 4"),
        (["--method", "weighted", "--select-every", "3"], "do not apply"),
    ],
)
def test_bad_cheap_mode_options_are_one_line_errors(tmp_path, capsys, options, message):
    code = main(["train", "--dataset", "mini", "--epochs", "1", "--out", str(tmp_path / "run"), *options])
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and message in lines[0], lines
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("options", [dict(score_fraction=0.5), dict(mode="weighted")])
def test_the_lightning_callback_refuses_the_modes_that_need_the_training_step(options):
    pytest.importorskip("lightning")
    from lossaug.lightning import LossAwareSelection

    with pytest.raises(InputError, match="sampling mode with score_fraction=1 only"):
        LossAwareSelection(make_method(**options))


def test_report_draws_the_gating_telemetry(tmp_path):
    pytest.importorskip("matplotlib")
    from lossaug.plots import plot_report, read_run

    out = tmp_path / "run"
    train(TrainConfig(**{**TINY, "epochs": 1}, score_fraction=0.5, out=str(out)))
    label, records = read_run(out)
    assert records[0]["selected_fraction"] == 0.5 and records[0]["stale_loss_scored"] is None  # nothing seen yet
    assert plot_report({label: records}, tmp_path / "report.png").stat().st_size > 0
