"""Candidates with their own soft targets: Mixup and CutMix against per-image oracles, the Beta draws, soft-target
scoring by hand, gathering the chosen target, common random numbers, every selection mode, the training step's
soft-target loss with label smoothing, and the Lightning callback."""

import math

import pytest
import torch
import torch.nn.functional as F

from lossaug import augment as A
from lossaug.errors import InputError
from lossaug.selection import LossAwareAugment, gather_selected, make_candidates, score_candidates, select_candidates


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def batch(size: int = 8, classes: int = 5, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    images = torch.randint(0, 256, (size, 3, 8, 8), generator=gen(seed), dtype=torch.uint8)
    return images, torch.randint(0, classes, (size,), generator=gen(seed + 1))


# ---------------------------------------------------------------- the ops


@pytest.mark.parametrize("alpha", [0.2, 1.0, 3.0])
def test_beta_draws_match_beta_moments_and_torchs_sampler(alpha):
    lam = A.beta_params(20_000, alpha, device=torch.device("cpu"), generator=gen(1))
    variance = 1 / (4 * (2 * alpha + 1))  # Beta(a, a): mean 1/2, variance 1 / (4 (2a + 1))
    assert abs(float(lam.mean()) - 0.5) < 0.01 and abs(float(lam.var()) - variance) < 0.01
    torch.manual_seed(0)
    theirs = torch.distributions.Beta(alpha, alpha).sample((20_000,))
    grid = torch.linspace(0.01, 0.99, 99)
    ks = ((lam.view(-1, 1) <= grid).float().mean(0) - (theirs.view(-1, 1) <= grid).float().mean(0)).abs().max()
    assert ks < 0.02  # two-sample Kolmogorov-Smirnov distance; 1.36 * sqrt(2 / 20000) = 0.0136 at 5%


def test_small_alpha_gives_no_nan_and_the_draws_follow_the_generator():
    lam = A.beta_params(1000, 0.01, device=torch.device("cpu"), generator=gen(2))
    assert lam.isfinite().all() and (lam >= 0).all() and (lam <= 1).all()
    assert torch.equal(lam, A.beta_params(1000, 0.01, device=torch.device("cpu"), generator=gen(2)))
    with pytest.raises(InputError, match="alpha"):
        A.parse_augment("mixup:0")


def test_mixup_equals_a_per_image_loop():
    images, labels = batch()
    targets = F.one_hot(labels, 5).float()
    mixed, mixed_targets = A.mixup(images, targets, 0.4, generator=gen(3))
    partner, lam = A.mix_params(len(images), 0.4, device=images.device, generator=gen(3))
    for b in range(len(images)):
        j, w = int(partner[b]), float(lam[b])
        expected = (w * images[b].float() + (1 - w) * images[j].float()).round().to(torch.uint8)
        assert (mixed[b].int() - expected.int()).abs().max() <= 1  # float32 vs float64 rounding at .5
        assert torch.allclose(mixed_targets[b], w * targets[b] + (1 - w) * targets[j])
    assert torch.allclose(mixed_targets.sum(dim=1), torch.ones(len(images)))


def test_cutmix_equals_the_authors_box_per_image_and_corrects_lambda_to_the_area():
    images, labels = batch(16)
    targets = F.one_hot(labels, 5).float()
    mixed, mixed_targets = A.cutmix(images, targets, 1.0, generator=gen(4))
    partner, lam, cy, cx = A.cutmix_params(16, 1.0, 8, 8, device=images.device, generator=gen(4))
    for b in range(16):
        ratio = math.sqrt(1.0 - float(lam[b]))
        cut_h, cut_w = int(8 * ratio), int(8 * ratio)  # rand_bbox of clovaai/CutMix-PyTorch
        y0, y1 = min(max(int(cy[b]) - cut_h // 2, 0), 8), min(max(int(cy[b]) + cut_h // 2, 0), 8)
        x0, x1 = min(max(int(cx[b]) - cut_w // 2, 0), 8), min(max(int(cx[b]) + cut_w // 2, 0), 8)
        expected = images[b].clone()
        expected[:, y0:y1, x0:x1] = images[int(partner[b]), :, y0:y1, x0:x1]
        assert torch.equal(mixed[b], expected)
        corrected = 1 - (y1 - y0) * (x1 - x0) / 64
        assert torch.allclose(mixed_targets[b], corrected * targets[b] + (1 - corrected) * targets[int(partner[b])])


def test_a_mixing_spec_needs_targets_and_audio_clips_can_be_mixed():
    images, _ = batch()
    with pytest.raises(InputError, match="mixes labels"):
        A.parse_augment("flip,mixup:0.2")(images, gen(0))
    from lossaug.augment.audio import parse_audio_augment

    clips = torch.randint(-8000, 8000, (4, 1, 50), dtype=torch.int16)
    mixed, targets = parse_audio_augment("gain,mixup:0.2")(clips, gen(0), targets=torch.eye(4))
    assert mixed.dtype == torch.int16 and torch.allclose(targets.sum(1), torch.ones(4))
    with pytest.raises(InputError, match="unknown audio augmentation 'cutmix'"):
        parse_audio_augment("cutmix")


# ---------------------------------------------------------------- candidates, scores, choice


@pytest.mark.parametrize("spec", ["flip,crop:2,mixup:0.2", "flip,crop:2,cutmix:1.0"])
def test_candidate_zero_is_the_baselines_draw_partner_and_lambda_included(spec):
    images, labels = batch()
    targets = F.one_hot(labels, 5).float()
    augment = A.parse_augment(spec)
    baseline = make_candidates(images, augment, 1, generator=gen(1), extra_generator=gen(2), targets=targets)
    proposed = make_candidates(images, augment, 4, generator=gen(1), extra_generator=gen(2), targets=targets)
    assert proposed.candidates.shape == (8, 4, 3, 8, 8) and proposed.targets.shape == (8, 4, 5)
    assert torch.equal(proposed.candidates[:, 0], baseline.candidates[:, 0])
    assert torch.equal(proposed.targets[:, 0], baseline.targets[:, 0])
    assert not torch.equal(proposed.targets[:, 1], proposed.targets[:, 0])


class Linear(torch.nn.Module):
    def __init__(self, classes: int = 5):
        super().__init__()
        self.fc = torch.nn.Linear(3 * 8 * 8, classes)
        torch.nn.init.normal_(self.fc.weight, std=0.01, generator=gen(9))

    def forward(self, x):
        return self.fc(x.float().flatten(1) / 255)


def test_soft_target_scoring_equals_a_hand_computation():
    model = Linear()
    images, labels = batch(3)
    candidates = torch.stack([images, images.flip(-1)], dim=1)  # (3, 2, ...)
    targets = torch.softmax(torch.randn(3, 2, 5, generator=gen(5)), dim=-1)  # (B,M,K)
    scores = score_candidates(model, candidates, targets)
    errors = score_candidates(model, candidates, targets, score="error")
    with torch.no_grad():
        for b in range(3):
            for m in range(2):
                logits = model(candidates[b, m : m + 1])[0].double()
                log_p = logits - math.log(sum(math.exp(v) for v in logits.tolist()))
                hand = -sum(float(targets[b, m, k]) * float(log_p[k]) for k in range(5))
                assert abs(float(scores[b, m]) - hand) < 1e-5
                expected = 1 - sum(float(targets[b, m, k]) * math.exp(float(log_p[k])) for k in range(5))
                assert abs(float(errors[b, m]) - expected) < 1e-5
    one_hot = F.one_hot(labels, 5).float().unsqueeze(1).expand(3, 2, 5)
    assert torch.allclose(score_candidates(model, candidates, one_hot), score_candidates(model, candidates, labels))


def test_gathering_takes_the_chosen_candidates_target():
    model = Linear()
    images, labels = batch()
    made = make_candidates(
        images, A.parse_augment("mixup:1.0"), 4, generator=gen(1), targets=F.one_hot(labels, 5).float()
    )
    selection = select_candidates(model, made.candidates, made.targets, generator=gen(2))
    rows = torch.arange(8)
    assert torch.equal(selection.targets, made.targets[rows, selection.index])
    assert torch.equal(selection.inputs, gather_selected(made.candidates, selection.index))
    assert torch.equal(selection.input_targets(labels), selection.targets)


def test_loss_aware_augment_mixes_in_every_mode_and_needs_num_classes():
    model = Linear()
    images, labels = batch()
    with pytest.raises(InputError, match="num_classes"):
        LossAwareAugment("flip,mixup:0.2")(model, images, labels, generator=gen(0))
    sampled = LossAwareAugment("flip,mixup:0.2", num_classes=5)(model, images, labels, generator=gen(0))
    assert sampled.targets.shape == (8, 5) and sampled.scored
    stale = torch.rand(8, generator=gen(3))
    gated = LossAwareAugment("flip,mixup:0.2", num_classes=5, score_fraction=0.5)
    chosen = gated(model, images, labels, generator=gen(0), extra_generator=gen(1), stale_losses=stale)
    assert chosen.targets.shape == (8, 5) and int(chosen.scored_rows.sum()) == 4
    first = LossAwareAugment("flip,mixup:0.2", num_classes=5).candidates(
        images, num_candidates=1, generator=gen(0), targets=labels
    )
    unscored = ~chosen.scored_rows
    assert torch.equal(chosen.targets[unscored], first.targets[:, 0][unscored])  # candidate 0, the baseline's draw
    everything = gated.gated(model, images, labels, torch.arange(8), 4, (gen(0), gen(1), gen(2)))
    ungated = LossAwareAugment("flip,mixup:0.2", num_classes=5)(
        model, images, labels, generator=gen(0), extra_generator=gen(1), select_generator=gen(2)
    )
    assert torch.equal(everything.inputs, ungated.inputs) and torch.equal(everything.targets, ungated.targets)
    weighted = LossAwareAugment("cutmix", num_classes=5, mode="weighted")(model, images, labels, generator=gen(0))
    assert weighted.inputs.shape == (32, 3, 8, 8) and weighted.targets.shape == (32, 5)
    loss = weighted.weighting.loss(model(weighted.inputs), weighted.targets)
    assert loss.isfinite()
    with pytest.raises(InputError, match="loss_fn"):
        LossAwareAugment("mixup", num_classes=5, loss_fn=lambda out, t: out.sum(1))


def test_training_on_soft_targets_composes_with_label_smoothing():
    from lossaug.run.step import train_step

    model = Linear()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    images, labels = batch()
    targets = torch.softmax(torch.randn(8, 5, generator=gen(6)), dim=1)
    with torch.no_grad():
        smoothed = targets * 0.9 + 0.1 / 5
        expected = -(smoothed * torch.log_softmax(model(images), dim=1)).sum(1).mean()
    out = train_step(model, optimizer, images, targets, torch.device("cpu"), label_smoothing=0.1)
    assert out.finite and torch.allclose(out.loss, expected, atol=1e-6)


def test_lightning_callback_swaps_in_the_chosen_soft_targets():
    pytest.importorskip("lightning.pytorch")
    from lossaug.lightning import LossAwareSelection

    class FakeTrainer:
        global_rank, current_epoch = 0, 0

    module = Linear()
    module.log = lambda *args, **kwargs: None
    images, labels = batch()
    selecting = LossAwareSelection(LossAwareAugment("flip,cutmix", num_classes=5), seed=1)
    data = [images, labels]
    selecting.on_train_batch_start(FakeTrainer(), module, data, 0)
    assert data[1].shape == (8, 5) and torch.equal(data[1], selecting.last_selection.targets)
