"""Loss-aware selection: score M augmented candidates per image with the model, sample one in proportion.

The method is four small pure steps, each usable alone:

1. ``make_candidates``: M independent augmentations per image, one batched call -> ``candidates (B,M,...)`` (and,
   for label-mixing augmentations such as Mixup, their own soft ``candidate_targets (B,M,K)``);
2. ``score_candidates``: each candidate's loss under the current model, without gradient and without changing the
   model -> ``scores (B,M)`` (soft-target cross-entropy where candidates carry soft targets);
3. ``selection_probs``: ``probs (B,M)`` proportional to ``scores ** (1 / temperature)``;
4. ``sample_index`` and ``gather_selected``: draw ``index (B,)`` from ``probs`` and take those candidates.

``select_candidates`` runs 2-4; ``LossAwareAugment`` runs 1-4 for a user's own training loop. The baseline (one
random augmentation per image) is the same path with ``num_candidates=1``, or ``temperature=math.inf``.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import NamedTuple, overload

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lossaug.augment import Augment, augment_with_targets, call_augment
from lossaug.errors import InputError
from lossaug.selection.modes import CandidateWeights
from lossaug.selection.probs import _probs_and_fallback, sample_index

SCORES = ("loss", "error")
BN_MODES = ("eval", "batch")
LossFn = Callable[[Tensor, Tensor], Tensor]


class Candidates(NamedTuple):
    """Candidates that carry their own soft targets: ``candidates (B,M,...)`` and ``targets (B,M,K)``."""

    candidates: Tensor
    targets: Tensor


@overload
def make_candidates(
    images: Tensor, augment: Augment, num_candidates: int, *, generator=..., extra_generator=..., targets: None = ...
) -> Tensor: ...
@overload
def make_candidates(
    images: Tensor, augment: Augment, num_candidates: int, *, generator=..., extra_generator=..., targets: Tensor
) -> Candidates: ...
def make_candidates(
    images: Tensor,
    augment: Augment,
    num_candidates: int,
    *,
    generator: torch.Generator | None = None,
    extra_generator: torch.Generator | None = None,
    targets: Tensor | None = None,
) -> Tensor | Candidates:
    """``candidates (B,M,...)``: ``num_candidates`` independent draws of ``augment`` per image of
    ``images (B,...)``, made by one call on the ``(B*M,...)`` batch.

    With ``extra_generator`` (common random numbers), candidate 0 of every image is drawn from ``generator``
    exactly as ``num_candidates=1`` draws it, and candidates 1..M-1 from ``extra_generator``: the baseline's
    augmentation of an image is then always one of the proposed arm's candidates, and both consume ``generator``
    identically.

    With soft ``targets (B,K)`` (needed by label-mixing augmentations, ``augment.mixes_targets``) the result is
    ``Candidates(candidates (B,M,...), targets (B,M,K))``: each candidate with its own target; a Mixup or CutMix
    partner is another row of the same ``(B*M,...)`` call (of the B images for candidate 0, as in the baseline).
    """
    if num_candidates < 1:
        raise InputError(f"num_candidates must be >= 1, got {num_candidates}")
    if targets is not None:
        return _candidates_with_targets(images, targets, augment, num_candidates, generator, extra_generator)
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


def _candidates_with_targets(
    images: Tensor, targets: Tensor, augment: Augment, num_candidates: int, generator, extra_generator
) -> Candidates:
    if targets.dim() != 2 or not targets.is_floating_point() or len(targets) != len(images):
        raise InputError(
            f"candidate targets must be soft, ({len(images)}, K) floating point; got {targets.dtype} "
            f"{tuple(targets.shape)}"
        )
    if extra_generator is not None:
        first, first_targets = augment_with_targets(augment, images, targets, generator)
        if num_candidates == 1:
            return Candidates(first.unsqueeze(1), first_targets.unsqueeze(1))
        rest = _candidates_with_targets(images, targets, augment, num_candidates - 1, extra_generator, None)
        return Candidates(
            torch.cat([first.unsqueeze(1), rest.candidates.to(first.dtype)], dim=1),
            torch.cat([first_targets.unsqueeze(1), rest.targets], dim=1),
        )
    batch = images.shape[0]
    repeated = images.unsqueeze(1).expand(batch, num_candidates, *images.shape[1:])
    flat, flat_targets = augment_with_targets(
        augment,
        repeated.reshape(batch * num_candidates, *images.shape[1:]),
        targets.repeat_interleave(num_candidates, dim=0),
        generator,
    )
    return Candidates(flat.view(batch, num_candidates, *flat.shape[1:]), flat_targets.view(batch, num_candidates, -1))


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
            for batchnorm in batchnorms:
                batchnorm.train()
                batchnorm.track_running_stats = False
        yield
    finally:
        for batchnorm, value in tracking:
            batchnorm.track_running_stats = value
        for module, training in flags:
            module.training = training


def _classification_scores(logits: Tensor, targets: Tensor, score: str) -> Tensor:
    """Per-row cross-entropy of the true class (``"loss"``) or ``1 - p(true class)`` (``"error"``), float32."""
    loss = F.cross_entropy(logits.float(), targets, reduction="none")
    return loss if score == "loss" else -torch.expm1(-loss)


def _soft_scores(logits: Tensor, targets: Tensor, score: str) -> Tensor:
    """Per-row soft-target cross-entropy ``-sum_k t_k log p_k`` (``"loss"``) or ``1 - sum_k t_k p_k``
    (``"error"``) of ``targets (N,K)``, float32; both equal the hard scores for one-hot targets."""
    if score == "loss":
        return F.cross_entropy(logits.float(), targets.float(), reduction="none")
    return 1.0 - (torch.softmax(logits.float(), dim=1) * targets.float()).sum(dim=1)


def _soft_targets_of(targets: Tensor, num_candidates: int) -> bool:
    """Whether classification ``targets`` are soft, ``(B,K)`` or ``(B,M,K)``, rather than ``(B,)`` classes; any
    other shape is an InputError."""
    soft = targets.is_floating_point() and targets.dim() in (2, 3)
    if soft and targets.dim() == 3 and targets.shape[1] != num_candidates:
        raise InputError(f"candidate targets hold {targets.shape[1]} candidates per image, candidates {num_candidates}")
    if not soft and (targets.dim() != 1 or targets.is_floating_point()):
        raise InputError(
            f"classification targets must be (B,) integer class indices or soft (B,K) / (B,M,K), got "
            f"{targets.dtype} {tuple(targets.shape)}; pass loss_fn for other targets"
        )
    return soft


def _flat_targets(targets: Tensor, batch: int, num_candidates: int, soft: bool) -> Tensor:
    """The targets of the ``B*M`` flattened candidates: soft ``(B,M,K)`` candidate targets flattened, anything else
    (``(B,)`` classes, ``(B,K)`` soft targets, a loss_fn's ``(B,...)``) repeated over the M candidates."""
    if soft and targets.dim() == 3:
        return targets.reshape(batch * num_candidates, -1)
    return targets.repeat_interleave(num_candidates, dim=0)


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
    over the M candidates. Soft targets, ``(B,K)`` for every candidate of an image or ``(B,M,K)`` each candidate's
    own (``make_candidates`` with targets), are scored by soft-target cross-entropy ``-sum_k t_k log p_k`` and
    ``1 - sum_k t_k p_k``. ``bn`` picks BatchNorm's statistics (see ``_scoring_mode``). ``chunk_size`` bounds the
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
    soft = loss_fn is None and _soft_targets_of(targets, num_candidates)
    total = batch * num_candidates
    if total == 0:
        return torch.zeros(batch, num_candidates, device=candidates.device)

    flat = candidates.reshape(total, *candidates.shape[2:])
    flat_targets = _flat_targets(targets, batch, num_candidates, soft)
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
            if soft:
                if chunk_targets.shape[-1] != num_classes:
                    raise InputError(f"soft targets have {chunk_targets.shape[-1]} classes, the model {num_classes}")
                pieces.append(_soft_scores(outputs, chunk_targets, score))
                continue
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


def gather_selected(candidates: Tensor, index: Tensor) -> Tensor:
    """``inputs (B,...)``: ``candidates[b, index[b]]`` for each row of ``candidates (B,M,...)``."""
    return candidates[torch.arange(len(index), device=candidates.device), index]


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
class Selection:
    """What selection chose: ``inputs (B,...)`` to train on, ``index (B,)`` of the chosen candidate and
    ``probs (B,M)`` it was drawn from; ``scores (B,M)`` when the model was run (None when the choice was uniform
    and nothing was scored: one candidate, ``temperature=inf`` or ``uniform_mix=1``); ``fallback (B,)`` bool marks
    rows whose scores were all zero or non-finite and fell back to uniform.

    ``scored_rows (B,)`` bool: under stale-loss gating (``score_fraction < 1``), the rows that were scored; the
    others took candidate 0 (``index`` 0, one-hot ``probs``, NaN ``scores``). None: every row, if any was scored.
    ``weighting``: the weighted mode, where ``inputs (B*M,...)`` are every candidate of every image and
    ``targets (B*M,)`` their labels, to be trained on with ``weighting.loss`` (``index`` and ``probs`` are then
    placeholders: the weights come from the training forward pass). With candidates that carry soft targets
    (Mixup, CutMix), ``targets (B,K)`` are the chosen candidates' (``(B*M,K)`` in the weighted mode). ``targets``
    is None when ``inputs`` are one per image with the targets given."""

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


def _candidate_targets(targets: Tensor, options: ScoringOptions, num_candidates: int) -> Tensor | None:
    """``targets`` when they are the candidates' own soft ``(B,M,K)`` (classification scoring), else None."""
    own = options.loss_fn is None and targets.is_floating_point() and targets.dim() == 3
    return targets if own and targets.shape[1] == num_candidates else None


def _uniform_selection(
    candidates: Tensor,
    temperature: float,
    uniform_mix: float,
    generator: torch.Generator | None,
    targets: Tensor | None = None,
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
    chosen = None if targets is None else gather_selected(targets, index)
    return Selection(gather_selected(candidates, index), index, probs, None, fallback, targets=chosen)


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
    into probabilities and sample one candidate per image from ``generator``. With candidate targets
    ``(B,M,K)``, the selection's ``targets`` are the chosen candidates'.

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
    own_targets = _candidate_targets(targets, options, num_candidates)
    if num_candidates == 1 or math.isinf(temperature) or uniform_mix == 1.0:
        return _uniform_selection(candidates, temperature, uniform_mix, generator, own_targets)
    scores = score_candidates(
        model,
        candidates,
        targets,
        loss_fn=options.loss_fn,
        score=options.score,
        bn=options.bn,
        chunk_size=options.chunk_size,
        autocast_dtype=options.autocast_dtype,
        check_targets=options.check_targets,
    )
    # Cross-entropy and 1 - p are never negative: only a user's loss_fn needs the (host-syncing) check.
    probs, fallback = _probs_and_fallback(scores, temperature, uniform_mix, check_negative=options.loss_fn is not None)
    index = sample_index(probs, generator=generator)
    chosen = None if own_targets is None else gather_selected(own_targets, index)
    return Selection(gather_selected(candidates, index), index, probs, scores, fallback, targets=chosen)
