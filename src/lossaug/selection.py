"""Loss-aware selection: score M augmented candidates per image with the model, sample one in proportion.

The method is four small pure steps, each usable alone:

1. ``make_candidates``: M independent augmentations per image, one batched call -> ``candidates (B,M,...)``;
2. ``score_candidates``: each candidate's loss under the current model, without gradient and without changing the
   model -> ``scores (B,M)``;
3. ``selection_probs``: ``probs (B,M)`` proportional to ``scores ** (1 / temperature)``;
4. ``sample_index`` and ``gather_selected``: draw ``index (B,)`` from ``probs`` and take those candidates.

``select_candidates`` runs 2-4; ``LossAwareAugment`` runs 1-4 for a user's own training loop. The baseline (one
random augmentation per image) is the same path with ``num_candidates=1``, or ``temperature=math.inf``.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lossaug.augment import Augment, call_augment, parse_augment
from lossaug.errors import InputError

SCORES = ("loss", "error")
BN_MODES = ("eval", "batch")
MODES = ("sample", "weighted")  # sample one candidate per image (the method), or train on all M weighted by loss
LossFn = Callable[[Tensor, Tensor], Tensor]


def make_candidates(
    images: Tensor,
    augment: Augment,
    num_candidates: int,
    *,
    generator: torch.Generator | None = None,
    extra_generator: torch.Generator | None = None,
) -> Tensor:
    """``candidates (B,M,...)``: ``num_candidates`` independent draws of ``augment`` per image of
    ``images (B,...)``, made by one call on the ``(B*M,...)`` batch.

    With ``extra_generator`` (common random numbers), candidate 0 of every image is drawn from ``generator``
    exactly as ``num_candidates=1`` draws it, and candidates 1..M-1 from ``extra_generator``: the baseline's
    augmentation of an image is then always one of the proposed arm's candidates, and both consume ``generator``
    identically.
    """
    if num_candidates < 1:
        raise InputError(f"num_candidates must be >= 1, got {num_candidates}")
    if extra_generator is not None:
        first = call_augment(augment, images, generator).unsqueeze(1)
        if num_candidates == 1:
            return first
        rest = make_candidates(images, augment, num_candidates - 1, generator=extra_generator)
        return torch.cat([first, rest.to(first.dtype)], dim=1)
    batch = images.shape[0]
    repeated = images.unsqueeze(1).expand(batch, num_candidates, *images.shape[1:])
    flat = call_augment(augment, repeated.reshape(batch * num_candidates, *images.shape[1:]), generator)
    return flat.view(batch, num_candidates, *flat.shape[1:])


# ---------------------------------------------------------------- scoring


@contextlib.contextmanager
def _scoring_mode(model: nn.Module, bn: str) -> Iterator[None]:
    """Put ``model`` in its scoring state and restore every ``training`` flag (and BatchNorm attribute) after.

    ``bn="eval"``: the whole model in eval mode (BatchNorm uses running statistics, Dropout is off).
    ``bn="batch"``: eval mode except BatchNorm, which normalises with the batch's own statistics; setting
    ``track_running_stats=False`` on a training BatchNorm makes it do so without touching its running buffers or
    ``num_batches_tracked``.
    """
    flags = [(module, module.training) for module in model.modules()]
    batchnorms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    tracking = [(m, m.track_running_stats) for m in batchnorms]
    try:
        model.eval()
        if bn == "batch":
            for module in batchnorms:
                module.train()
                module.track_running_stats = False
        yield
    finally:
        for module, value in tracking:
            module.track_running_stats = value
        for module, training in flags:
            module.training = training


def _classification_scores(logits: Tensor, targets: Tensor, score: str) -> Tensor:
    """Per-row cross-entropy of the true class (``"loss"``) or ``1 - p(true class)`` (``"error"``), float32."""
    loss = F.cross_entropy(logits.float(), targets, reduction="none")
    return loss if score == "loss" else -torch.expm1(-loss)


def score_candidates(
    model: nn.Module,
    candidates: Tensor,
    targets: Tensor,
    *,
    loss_fn: LossFn | None = None,
    score: str = "loss",
    bn: str = "eval",
    chunk_size: int | None = None,
    autocast_dtype: torch.dtype | None = None,
    check_targets: bool = True,
) -> Tensor:
    """``scores (B,M)`` float32 of ``candidates (B,M,...)`` for ``targets (B,...)`` under ``model``, no gradient.

    ``score="loss"`` is the per-sample cross-entropy of the true class, ``"error"`` is ``1 - p(true class)``;
    ``loss_fn(outputs (N,...), targets (N,...)) -> (N,)`` replaces both for any other task. Targets are repeated
    over the M candidates. ``bn`` picks BatchNorm's statistics (see ``_scoring_mode``). ``chunk_size`` bounds the
    candidates per forward pass (None: all ``B*M`` at once); with ``bn="batch"`` each chunk uses its own
    statistics. ``autocast_dtype`` (e.g. ``torch.bfloat16``) runs the forward under autocast.
    ``check_targets=False`` skips the target range check (its host sync) when the caller validated the targets
    already, as the training app does once at load.

    The model comes back exactly as it was: parameters, buffers, every ``training`` flag and the grad mode.
    """
    if not isinstance(model, nn.Module):
        raise InputError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if candidates.dim() < 2:
        raise InputError(f"candidates must be (B,M,...), got shape {tuple(candidates.shape)}")
    batch, num_candidates = candidates.shape[:2]
    if targets.shape[0] != batch:
        raise InputError(f"candidates hold {batch} images but targets hold {targets.shape[0]}")
    ScoringOptions(score, bn, chunk_size, autocast_dtype, loss_fn, check_targets)  # validates them
    if loss_fn is None and (targets.dim() != 1 or targets.is_floating_point()):
        raise InputError(
            f"classification targets must be (B,) integer class indices, got {targets.dtype} "
            f"{tuple(targets.shape)}; pass loss_fn for other targets"
        )
    total = batch * num_candidates
    if total == 0:
        return torch.zeros(batch, num_candidates, device=candidates.device)

    flat = candidates.reshape(total, *candidates.shape[2:])
    flat_targets = targets.repeat_interleave(num_candidates, dim=0)
    step = total if chunk_size is None else chunk_size
    autocast = (
        torch.autocast(device_type=candidates.device.type, dtype=autocast_dtype)
        if autocast_dtype is not None
        else contextlib.nullcontext()
    )
    pieces = []
    out_of_range = None
    with _scoring_mode(model, bn), torch.inference_mode(), autocast:
        for start in range(0, total, step):
            outputs = model(flat[start : start + step])
            chunk_targets = flat_targets[start : start + step]
            if loss_fn is not None:
                values = loss_fn(outputs, chunk_targets)
                if values.shape != (len(chunk_targets),):
                    raise InputError(
                        f"loss_fn must return one value per candidate, shape ({len(chunk_targets)},), "
                        f"got {tuple(values.shape)}"
                    )
                pieces.append(values.float())
                continue
            num_classes = outputs.shape[-1]
            if out_of_range is None and check_targets:
                # Checked on the device and read once at the end: one host sync per call, never a
                # device-side assert from cross_entropy.
                out_of_range = (targets < 0) | (targets >= num_classes)
            pieces.append(_classification_scores(outputs, chunk_targets.clamp(0, num_classes - 1), score))
    if out_of_range is not None and bool(out_of_range.any()):
        row = int(out_of_range.nonzero()[0, 0])
        raise InputError(f"target {int(targets[row])} at row {row} is out of range for {outputs.shape[-1]} classes")
    return torch.cat(pieces).view(batch, num_candidates)


# ---------------------------------------------------------------- probabilities and sampling


def _probs_and_fallback(
    scores: Tensor, temperature: float, uniform_mix: float, check_negative: bool = True
) -> tuple[Tensor, Tensor]:
    """``probs (B,M)`` and ``fallback (B,)`` bool: rows that were all zero or non-finite and became uniform.
    ``check_negative=False`` skips the (host-syncing) check where scores cannot be negative."""
    if scores.dim() != 2:
        raise InputError(f"scores must be (B,M), got shape {tuple(scores.shape)}")
    if math.isnan(temperature) or temperature < 0:
        raise InputError(f"temperature must be >= 0 (0: argmax, inf: uniform), got {temperature}")
    if not 0.0 <= uniform_mix <= 1.0:
        raise InputError(f"uniform_mix must be in [0, 1], got {uniform_mix}")
    scores = scores.float()
    negative = (scores < 0).any(dim=1) if check_negative else None
    if negative is not None and bool(negative.any()):
        row = int(negative.nonzero()[0, 0])
        raise InputError(f"scores must be >= 0; row {row} has {scores[row].tolist()}")
    num_candidates = scores.shape[1]
    uniform = torch.full_like(scores, 1.0 / max(num_candidates, 1))
    fallback = ~torch.isfinite(scores).all(dim=1) | (scores == 0).all(dim=1)
    if math.isinf(temperature):
        probs = uniform
    elif temperature == 0:
        is_max = scores == scores.max(dim=1, keepdim=True).values
        probs = is_max / is_max.sum(dim=1, keepdim=True)
    else:
        # In log space, so that small temperatures (large powers) neither overflow nor underflow.
        probs = torch.softmax(torch.log(scores) / temperature, dim=1)
    probs = torch.where(fallback.unsqueeze(1), uniform, probs)
    if uniform_mix > 0:
        probs = (1 - uniform_mix) * probs + uniform_mix * uniform
    return probs, fallback


def selection_probs(scores: Tensor, temperature: float = 1.0, uniform_mix: float = 0.0) -> Tensor:
    """``probs (B,M)`` with rows summing to 1, proportional to ``scores ** (1 / temperature)``.

    ``temperature=1`` is the method (probability proportional to loss); ``0`` puts all mass on the largest score
    (MaxUp; tied maxima share it); ``math.inf`` is uniform (the baseline). ``uniform_mix`` blends in
    ``uniform_mix / M`` of uniform. Rows that are all zero or hold NaN/inf become uniform; negative scores are a
    ValueError.
    """
    return _probs_and_fallback(scores, temperature, uniform_mix)[0]


def probs_entropy(probs: Tensor) -> Tensor:
    """``(B,)`` entropy in nats of each row of ``probs (B,M)`` (0 log 0 = 0); ``log M`` is uniform."""
    return -(probs * torch.log(probs.clamp_min(1e-30))).sum(dim=1)


def sample_index(probs: Tensor, *, generator: torch.Generator | None = None) -> Tensor:
    """``index (B,)`` int64: one draw per row of ``probs (B,M)`` by inverse CDF (no host sync)."""
    cdf = probs.cumsum(dim=1)
    # u scaled by each row's total, so float rounding in the cumsum can never pick a zero-probability tail.
    u = torch.rand(probs.shape[0], 1, device=probs.device, generator=generator) * cdf[:, -1:]
    return torch.searchsorted(cdf, u, right=True).squeeze(1).clamp_max(probs.shape[1] - 1)


def gather_selected(candidates: Tensor, index: Tensor) -> Tensor:
    """``inputs (B,...)``: ``candidates[b, index[b]]`` for each row of ``candidates (B,M,...)``."""
    return candidates[torch.arange(len(index), device=candidates.device), index]


def gate_rows(stale_losses: Tensor, count: int, order: Tensor | None = None) -> Tensor:
    """``rows (count,)`` in ascending order: the ``count`` rows of ``stale_losses (B,)`` with the highest stale
    loss (NaN counts as unseen, like +inf), ties broken by the smaller ``order (B,)`` (the dataset index; None:
    the row). ``count >= B`` gives every row."""
    batch = stale_losses.shape[0]
    if count >= batch:
        return torch.arange(batch, device=stale_losses.device)
    key = torch.arange(batch, device=stale_losses.device) if order is None else order
    by_key = torch.argsort(key, stable=True)
    losses = torch.nan_to_num(stale_losses[by_key].float(), nan=math.inf)
    by_loss = torch.argsort(losses, descending=True, stable=True)  # stable: equal losses stay in key order
    return by_key[by_loss[: max(count, 0)]].sort().values


@dataclass(frozen=True)
class ScoringOptions:
    """How candidates are scored (see ``score_candidates``), validated once when made.

    ``score``: ``"loss"`` (cross-entropy of the true class) or ``"error"`` (1 - p(true class)); ``loss_fn``
    replaces both for other tasks. ``bn``: BatchNorm statistics while scoring (``"eval"`` running, ``"batch"`` the
    chunk's own). ``chunk_size``: candidates per forward pass (None: all at once). ``autocast_dtype``: e.g.
    ``torch.bfloat16`` to score under autocast (None: the model's own precision).
    """

    score: str = "loss"
    bn: str = "eval"
    chunk_size: int | None = None
    autocast_dtype: torch.dtype | None = None
    loss_fn: LossFn | None = None
    check_targets: bool = True  # False: the caller validated the targets (skips one host sync per call)

    def __post_init__(self) -> None:
        if self.score not in SCORES:
            raise InputError(f"unknown score {self.score!r}; choose from {list(SCORES)}")
        if self.bn not in BN_MODES:
            raise InputError(f"unknown bn mode {self.bn!r}; choose from {list(BN_MODES)}")
        if self.chunk_size is not None and (isinstance(self.chunk_size, bool) or self.chunk_size < 1):
            raise InputError(f"chunk_size must be >= 1 or None, got {self.chunk_size}")
        if self.autocast_dtype is not None and not isinstance(self.autocast_dtype, torch.dtype):
            raise InputError(f"autocast_dtype must be a torch.dtype or None, got {self.autocast_dtype!r}")
        if self.loss_fn is not None and not callable(self.loss_fn):
            raise InputError(f"loss_fn must be callable, got {type(self.loss_fn).__name__}")


@dataclass(frozen=True)
class CandidateWeights:
    """The weighted mode's loss: train on all M candidates of each image at once, each candidate's loss weighted
    by ``p (B,M)`` proportional to ``loss ** (1 / temperature)`` (the method's rule, with its uniform fallback
    and ``uniform_mix``), computed from the same forward pass and detached. Its gradient is the expectation of
    the sampled method's gradient for those probabilities, without the sampling noise or a scoring pass."""

    num_candidates: int
    temperature: float = 1.0
    uniform_mix: float = 0.0

    def probs(self, logits: Tensor, targets: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``(probs (B,M), fallback (B,), scores (B,M))`` of ``logits (B*M,K)`` for ``targets (B*M,)``, no
        gradient; scores are the plain cross-entropy of the true class, as the sampled method scores."""
        with torch.no_grad():
            scores = F.cross_entropy(logits.detach().float(), targets, reduction="none").view(-1, self.num_candidates)
            probs, fallback = _probs_and_fallback(scores, self.temperature, self.uniform_mix, check_negative=False)
        return probs, fallback, scores

    def loss(self, logits: Tensor, targets: Tensor, label_smoothing: float = 0.0) -> Tensor:
        """``sum_m p_m * loss_m`` per image, averaged over the ``B`` images of ``logits (B*M,K)``."""
        per_input = F.cross_entropy(logits.float(), targets, label_smoothing=label_smoothing, reduction="none")
        probs = self.probs(logits, targets)[0]
        return (probs * per_input.view(-1, self.num_candidates)).sum(dim=1).mean()


@dataclass(frozen=True)
class Selection:
    """What selection chose: ``inputs (B,...)`` to train on, ``index (B,)`` of the chosen candidate and
    ``probs (B,M)`` it was drawn from; ``scores (B,M)`` when the model was run (None when the choice was uniform
    and nothing was scored: one candidate, ``temperature=inf`` or ``uniform_mix=1``); ``fallback (B,)`` bool marks
    rows whose scores were all zero or non-finite and fell back to uniform.

    ``scored_rows (B,)`` bool: under stale-loss gating (``score_fraction < 1``), the rows that were scored; the
    others took candidate 0 (``index`` 0, one-hot ``probs``, NaN ``scores``). None: every row, if any was scored.
    ``weighting``: the weighted mode, where ``inputs (B*M,...)`` are every candidate of every image and
    ``targets (B*M,)`` their labels, to be trained on with ``weighting.loss`` (``index`` and ``probs`` are then
    placeholders: the weights come from the training forward pass). ``targets`` is None when ``inputs`` are one
    per image, in the order of the targets given."""

    inputs: Tensor
    index: Tensor
    probs: Tensor
    scores: Tensor | None
    fallback: Tensor
    scored_rows: Tensor | None = None
    targets: Tensor | None = None
    weighting: CandidateWeights | None = None

    @property
    def scored(self) -> bool:
        """Whether the model was run to score the candidates."""
        return self.scores is not None

    def input_targets(self, targets: Tensor) -> Tensor:
        """The targets of ``inputs``: ``self.targets``, or the batch's ``targets (B,)``."""
        return targets if self.targets is None else self.targets

    @property
    def fallback_rows(self) -> int:
        """How many rows fell back to uniform (reads the device: one host sync)."""
        return int(self.fallback.sum())


def _uniform_selection(
    candidates: Tensor, temperature: float, uniform_mix: float, generator: torch.Generator | None
) -> Selection:
    """One candidate, or a uniform choice: no model run, so selection costs what the baseline costs."""
    batch, num_candidates = candidates.shape[:2]
    ones = torch.ones(batch, num_candidates, device=candidates.device)
    probs, fallback = _probs_and_fallback(ones, temperature, uniform_mix, check_negative=False)
    index = (
        torch.zeros(batch, dtype=torch.long, device=candidates.device)
        if num_candidates == 1
        else sample_index(probs, generator=generator)
    )
    return Selection(gather_selected(candidates, index), index, probs, None, fallback)


def select_candidates(
    model: nn.Module,
    candidates: Tensor,
    targets: Tensor,
    *,
    temperature: float = 1.0,
    uniform_mix: float = 0.0,
    generator: torch.Generator | None = None,
    loss_fn: LossFn | None = None,
    score: str = "loss",
    bn: str = "eval",
    chunk_size: int | None = None,
    autocast_dtype: torch.dtype | None = None,
) -> Selection:
    """Score ``candidates (B,M,...)`` (the scoring options are those of ``score_candidates``), turn the scores
    into probabilities and sample one candidate per image from ``generator``.

    With one candidate, or a uniform selection (``temperature=math.inf`` or ``uniform_mix=1``), the model is not
    run (``scores`` is None): selection then costs what the baseline costs.
    """
    options = ScoringOptions(score, bn, chunk_size, autocast_dtype, loss_fn)
    return _select(model, candidates, targets, options, temperature, uniform_mix, generator)


def _select(
    model: nn.Module,
    candidates: Tensor,
    targets: Tensor,
    options: ScoringOptions,
    temperature: float,
    uniform_mix: float,
    generator: torch.Generator | None,
) -> Selection:
    if candidates.dim() < 2:
        raise InputError(f"candidates must be (B,M,...), got shape {tuple(candidates.shape)}")
    batch, num_candidates = candidates.shape[:2]
    if targets.shape[0] != batch:
        raise InputError(f"candidates hold {batch} images but targets hold {targets.shape[0]}")
    if num_candidates == 1 or math.isinf(temperature) or uniform_mix == 1.0:
        return _uniform_selection(candidates, temperature, uniform_mix, generator)
    scores = score_candidates(
        model, candidates, targets, loss_fn=options.loss_fn, score=options.score, bn=options.bn,
        chunk_size=options.chunk_size, autocast_dtype=options.autocast_dtype, check_targets=options.check_targets,
    )  # fmt: skip
    # Cross-entropy and 1 - p are never negative: only a user's loss_fn needs the (host-syncing) check.
    probs, fallback = _probs_and_fallback(scores, temperature, uniform_mix, check_negative=options.loss_fn is not None)
    index = sample_index(probs, generator=generator)
    return Selection(gather_selected(candidates, index), index, probs, scores, fallback)


@dataclass(frozen=True)
class LossAwareAugment:
    """The method as one object: ``sel = la(model, images, targets, generator=g)``, then train on ``sel.inputs``.

    ``augment`` is any ``(images, generator) -> images`` callable, a one-argument transform (kornia), or a spec
    string such as ``"flip,crop,cutout"``. ``num_candidates`` is M; ``temperature`` 1 samples in proportion to the
    loss, 0 takes the hardest candidate, ``math.inf`` is plain random augmentation. ``score``, ``bn``,
    ``chunk_size``, ``autocast_dtype`` and ``loss_fn`` say how candidates are scored (``ScoringOptions``); every
    option is validated here, once. The training app, ``bench``, ``show`` and the Lightning callback all select
    through this object.

    Two cheaper modes, off by default: ``score_fraction=Q < 1`` scores only the ``round(Q*B)`` images of a batch
    with the highest stale loss (passed per call; the object stays stateless) and gives the others candidate 0;
    ``mode="weighted"`` returns every candidate for training with ``CandidateWeights.loss`` (no scoring pass).
    """

    augment: Augment | str
    num_candidates: int = 4
    temperature: float = 1.0
    score: str = "loss"
    bn: str = "eval"
    uniform_mix: float = 0.0
    loss_fn: LossFn | None = None
    chunk_size: int | None = None
    autocast_dtype: torch.dtype | None = None
    check_targets: bool = True
    score_fraction: float = 1.0
    mode: str = "sample"
    _augment: Augment = field(init=False, repr=False, compare=False)
    _scoring: ScoringOptions = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if isinstance(self.num_candidates, bool) or self.num_candidates < 1:
            raise InputError(f"num_candidates must be >= 1, got {self.num_candidates}")
        if math.isnan(self.temperature) or self.temperature < 0:
            raise InputError(f"temperature must be >= 0, got {self.temperature}")
        if not 0.0 <= self.uniform_mix <= 1.0:
            raise InputError(f"uniform_mix must be in [0, 1], got {self.uniform_mix}")
        check_score_fraction(self.score_fraction)
        if self.mode not in MODES:
            raise InputError(f"unknown mode {self.mode!r}; choose from {list(MODES)}")
        if self.mode == "weighted" and self.score_fraction != 1.0:
            raise InputError("score_fraction applies to the sampling mode; the weighted mode scores every candidate")
        scoring = ScoringOptions(
            self.score, self.bn, self.chunk_size, self.autocast_dtype, self.loss_fn, self.check_targets
        )
        augment = parse_augment(self.augment) if isinstance(self.augment, str) else self.augment
        if not callable(augment):
            raise InputError(f"augment must be callable or a spec string, got {type(augment).__name__}")
        object.__setattr__(self, "_augment", augment)
        object.__setattr__(self, "_scoring", scoring)

    @property
    def scoring(self) -> ScoringOptions:
        return self._scoring

    def candidates(
        self,
        images: Tensor,
        *,
        num_candidates: int | None = None,
        generator: torch.Generator | None = None,
        extra_generator: torch.Generator | None = None,
    ) -> Tensor:
        """``candidates (B,M,...)`` of ``images (B,...)``; ``num_candidates`` overrides M (1: a baseline step)."""
        count = self.num_candidates if num_candidates is None else num_candidates
        return make_candidates(images, self._augment, count, generator=generator, extra_generator=extra_generator)

    def select(self, model: nn.Module, candidates: Tensor, targets: Tensor, *, generator=None) -> Selection:
        """Score ``candidates (B,M,...)`` with ``model`` and sample one per image from ``generator``."""
        return _select(model, candidates, targets, self._scoring, self.temperature, self.uniform_mix, generator)

    def __call__(
        self,
        model: nn.Module,
        images: Tensor,
        targets: Tensor,
        *,
        generator: torch.Generator | None = None,
        num_candidates: int | None = None,
        extra_generator: torch.Generator | None = None,
        select_generator: torch.Generator | None = None,
        stale_losses: Tensor | None = None,
        order: Tensor | None = None,
    ) -> Selection:
        """Augment ``images (B,...)`` M times, score, and pick one candidate per image.

        ``generator`` draws the augmentations (and the choice, unless ``select_generator`` is given);
        ``extra_generator`` draws candidates 1..M-1 (common random numbers, see ``make_candidates``);
        ``num_candidates`` overrides M for this call (1: a plain random augmentation, the model is not run).
        With ``score_fraction < 1``, ``stale_losses (B,)`` (each image's last training loss, +inf if never seen)
        pick the rows to score and ``order (B,)`` (dataset indices) breaks their ties; see ``gated``.
        """
        if targets.shape[0] != images.shape[0]:
            raise InputError(f"images hold {images.shape[0]} samples but targets hold {targets.shape[0]}")
        count = self.num_candidates if num_candidates is None else num_candidates
        chooser = select_generator if select_generator is not None else generator
        if self.mode == "weighted":
            return self.weighted(images, targets, count, generator=generator, extra_generator=extra_generator)
        uniform = math.isinf(self.temperature) or self.uniform_mix == 1.0
        if self.score_fraction < 1.0 and count > 1 and not uniform:
            if stale_losses is None or stale_losses.shape != targets.shape[:1]:
                got = None if stale_losses is None else tuple(stale_losses.shape)
                raise InputError(f"score_fraction < 1 needs stale_losses of shape ({len(targets)},), got {got}")
            rows = gate_rows(stale_losses, round(self.score_fraction * len(targets)), order)
            generators = (generator, extra_generator, chooser)
            return self.gated(model, images, targets, rows, count, generators)
        candidates = self.candidates(images, num_candidates=count, generator=generator, extra_generator=extra_generator)
        return self.select(model, candidates, targets, generator=chooser)

    def gated(
        self,
        model: nn.Module,
        images: Tensor,
        targets: Tensor,
        rows: Tensor,
        num_candidates: int,
        generators: tuple[torch.Generator | None, torch.Generator | None, torch.Generator | None],
    ) -> Selection:
        """Stale-loss gating: only ``rows (k,)`` (ascending) of ``images (B,...)`` get ``num_candidates`` scored
        and one sampled; every other image takes candidate 0, drawn for all B images from the first generator
        exactly as a baseline step draws it. ``generators`` are (augment, extra candidates, choice); the extra
        candidates are drawn for the k rows only. With every row (k = B) this is the ungated selection, draw for
        draw; with none it is the baseline's step."""
        augment_generator, extra_generator, chooser = generators
        first = call_augment(self._augment, images, augment_generator)
        batch, device = images.shape[0], images.device
        index = torch.zeros(batch, dtype=torch.long, device=device)
        probs = torch.zeros(batch, num_candidates, device=device)
        probs[:, 0] = 1.0
        scores = torch.full((batch, num_candidates), math.nan, device=device)
        scored_rows = torch.zeros(batch, dtype=torch.bool, device=device)
        fallback = torch.zeros(batch, dtype=torch.bool, device=device)
        if len(rows) == 0:
            return Selection(first, index, probs, None, fallback, scored_rows)
        extra = extra_generator if extra_generator is not None else augment_generator
        rest = make_candidates(images[rows], self._augment, num_candidates - 1, generator=extra)
        candidates = torch.cat([first[rows].unsqueeze(1), rest.to(first.dtype)], dim=1)
        chosen = self.select(model, candidates, targets[rows], generator=chooser)
        inputs = first.clone()
        inputs[rows] = chosen.inputs
        index[rows], probs[rows], fallback[rows], scored_rows[rows] = chosen.index, chosen.probs, chosen.fallback, True
        if chosen.scores is not None:
            scores[rows] = chosen.scores
        return Selection(inputs, index, probs, scores if chosen.scored else None, fallback, scored_rows)

    def weighted(
        self,
        images: Tensor,
        targets: Tensor,
        num_candidates: int,
        *,
        generator: torch.Generator | None = None,
        extra_generator: torch.Generator | None = None,
    ) -> Selection:
        """The weighted mode: every candidate of every image, ``inputs (B*M,...)`` with ``targets (B*M,)``, to be
        trained on with ``CandidateWeights.loss``; nothing is scored here (the training forward pass does it)."""
        candidates = self.candidates(
            images, num_candidates=num_candidates, generator=generator, extra_generator=extra_generator
        )
        batch, device = images.shape[0], images.device
        return Selection(
            candidates.flatten(0, 1),
            torch.zeros(batch, dtype=torch.long, device=device),
            torch.full((batch, num_candidates), 1.0 / num_candidates, device=device),
            None,
            torch.zeros(batch, dtype=torch.bool, device=device),
            targets=targets.repeat_interleave(num_candidates, dim=0),
            weighting=CandidateWeights(num_candidates, self.temperature, self.uniform_mix),
        )


def check_score_fraction(value: float) -> None:
    """``score_fraction`` must be a number in (0, 1]."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 1:
        raise InputError(f"score_fraction must be in (0, 1] (the fraction of each batch scored), got {value!r}")
