"""``LossAwareAugment``: the method as one object (augmentation, M, temperature, scoring options and the cheap
modes, validated once), the way the training app, ``bench``, ``show`` and the Lightning callback select."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lossaug.augment import Augment, augment_with_targets, call_augment, mixes_targets, parse_augment
from lossaug.errors import InputError
from lossaug.selection.core import Candidates, LossFn, ScoringOptions, Selection, _select, make_candidates
from lossaug.selection.modes import MODES, SAMPLE, WEIGHTED, CandidateWeights, check_score_fraction, gate_rows


@dataclass(frozen=True)
class LossAwareAugment:
    """The method as one object: ``sel = la(model, images, targets, generator=g)``, then train on ``sel.inputs``.

    ``augment`` is any ``(images, generator) -> images`` callable, a one-argument transform (kornia), or a spec
    string such as ``"flip,crop,cutout"``, or for audio ``"shift,gain,noise"`` with ``sample_rate`` (Hz; the
    candidates are then waveforms ``(B,T)`` or ``(B,C,T)``, int16 or float in [-1, 1]). ``num_candidates`` is M;
    ``temperature`` 1 samples in proportion to the loss, 0 takes the hardest candidate, ``math.inf`` is plain
    random augmentation. ``score``, ``bn``, ``chunk_size``, ``autocast_dtype`` and ``loss_fn`` say how candidates
    are scored (``ScoringOptions``); every option is validated here, once. The training app, ``bench``, ``show``
    and the Lightning callback all select through this object.

    Two cheaper modes, off by default: ``score_fraction=Q < 1`` scores only the ``round(Q*B)`` images of a batch
    with the highest stale loss (passed per call; the object stays stateless) and gives the others candidate 0;
    ``mode="weighted"`` returns every candidate for training with ``CandidateWeights.loss`` (no scoring pass).

    Label-mixing augmentations (``"flip,crop,mixup:0.2"``, ``cutmix``) give each candidate its own soft target:
    integer targets are made one-hot over ``num_classes`` classes (needed then; soft ``(B,K)`` targets are taken as
    they are), candidates are scored by soft-target cross-entropy, and the selection's ``targets (B,K)`` are the
    chosen candidates', to be trained on with a soft-target loss (``F.cross_entropy`` takes them). Every mode works
    with them.
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
    mode: str = SAMPLE
    num_classes: int | None = None  # K of the one-hot targets a label-mixing augmentation needs (None: not needed)
    sample_rate: int | None = None  # Hz of the waveforms an audio spec is built for (None: images, or 16 kHz audio)
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
        if self.mode == WEIGHTED and self.score_fraction != 1.0:
            raise InputError("score_fraction applies to the sampling mode; the weighted mode scores every candidate")
        scoring = ScoringOptions(
            self.score, self.bn, self.chunk_size, self.autocast_dtype, self.loss_fn, self.check_targets
        )
        augment: Augment
        if isinstance(self.augment, str):
            augment = parse_augment(self.augment, sample_rate=self.sample_rate)
        elif self.sample_rate is not None:
            raise InputError("sample_rate builds an audio spec string; give the augment as one, or build the ops")
        else:
            augment = self.augment
        if not callable(augment):
            raise InputError(f"augment must be callable or a spec string, got {type(augment).__name__}")
        if self.num_classes is not None and (isinstance(self.num_classes, bool) or self.num_classes < 1):
            raise InputError(f"num_classes must be >= 1 or None, got {self.num_classes}")
        if mixes_targets(augment) and self.loss_fn is not None:
            raise InputError(
                "a label-mixing augmentation (mixup, cutmix) scores with soft-target cross-entropy; "
                "it cannot be combined with loss_fn"
            )
        object.__setattr__(self, "_augment", augment)
        object.__setattr__(self, "_scoring", scoring)

    @property
    def scoring(self) -> ScoringOptions:
        return self._scoring

    @property
    def mixes_targets(self) -> bool:
        """Whether the augmentation mixes labels: candidates then carry their own soft targets."""
        return mixes_targets(self._augment)

    def soft_targets(self, targets: Tensor) -> Tensor:
        """``(B,K)`` float32 class distributions of ``targets``: soft ``(B,K)`` as given, ``(B,)`` classes one-hot
        over ``num_classes``."""
        if targets.is_floating_point() and targets.dim() == 2:
            return targets.float()
        if targets.dim() != 1 or targets.is_floating_point():
            raise InputError(
                f"targets must be (B,) class indices or soft (B,K), got {targets.dtype} {tuple(targets.shape)}"
            )
        if self.num_classes is None:
            raise InputError(
                "a label-mixing augmentation (mixup, cutmix) needs num_classes to make one-hot targets "
                "of class indices (or pass soft (B,K) targets)"
            )
        if self.check_targets and len(targets) and bool(((targets < 0) | (targets >= self.num_classes)).any()):
            row = int(((targets < 0) | (targets >= self.num_classes)).nonzero()[0, 0])
            raise InputError(f"target {int(targets[row])} at row {row} is out of range for {self.num_classes} classes")
        return F.one_hot(targets, self.num_classes).float()

    def candidates(
        self,
        images: Tensor,
        *,
        num_candidates: int | None = None,
        generator: torch.Generator | None = None,
        extra_generator: torch.Generator | None = None,
        targets: Tensor | None = None,
    ) -> Tensor | Candidates:
        """``candidates (B,M,...)`` of ``images (B,...)``; ``num_candidates`` overrides M (1: a baseline step).
        With ``targets`` (needed when the augmentation mixes labels; made soft by ``soft_targets``):
        ``Candidates(candidates, targets (B,M,K))``."""
        count = self.num_candidates if num_candidates is None else num_candidates
        soft = None if targets is None else self.soft_targets(targets)
        return make_candidates(
            images, self._augment, count, generator=generator, extra_generator=extra_generator, targets=soft
        )

    def _made(self, images: Tensor, targets: Tensor, count: int, generator, extra_generator) -> tuple[Tensor, Tensor]:
        """``(candidates (B,M,...), targets)``: the candidates' own soft ``(B,M,K)`` when the augmentation mixes
        labels, else the batch's ``targets`` as given."""
        soft = None if not self.mixes_targets else self.soft_targets(targets)
        made = make_candidates(
            images, self._augment, count, generator=generator, extra_generator=extra_generator, targets=soft
        )
        if isinstance(made, Candidates):
            return made.candidates, made.targets
        return made, targets

    def select(self, model: nn.Module, candidates: Tensor, targets: Tensor, *, generator=None) -> Selection:
        """Score ``candidates (B,M,...)`` with ``model`` and sample one per image from ``generator``; ``targets``
        are the batch's, or the candidates' own ``(B,M,K)``."""
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
        if self.mode == WEIGHTED:
            return self.weighted(images, targets, count, generator=generator, extra_generator=extra_generator)
        uniform = math.isinf(self.temperature) or self.uniform_mix == 1.0
        if self.score_fraction < 1.0 and count > 1 and not uniform:
            if stale_losses is None or stale_losses.shape != targets.shape[:1]:
                got = None if stale_losses is None else tuple(stale_losses.shape)
                raise InputError(f"score_fraction < 1 needs stale_losses of shape ({len(targets)},), got {got}")
            rows = gate_rows(stale_losses, round(self.score_fraction * len(targets)), order)
            generators = (generator, extra_generator, chooser)
            return self.gated(model, images, targets, rows, count, generators)
        candidates, candidate_targets = self._made(images, targets, count, generator, extra_generator)
        return self.select(model, candidates, candidate_targets, generator=chooser)

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
        draw; with none it is the baseline's step. With a label-mixing augmentation the k rows' other candidates
        take their partners among those rows."""
        augment_generator, extra_generator, chooser = generators
        soft = self.soft_targets(targets) if self.mixes_targets else None
        if soft is None:
            first, first_targets = call_augment(self._augment, images, augment_generator), None
        else:
            first, first_targets = augment_with_targets(self._augment, images, soft, augment_generator)
        batch, device = images.shape[0], images.device
        index = torch.zeros(batch, dtype=torch.long, device=device)
        probs = torch.zeros(batch, num_candidates, device=device)
        probs[:, 0] = 1.0
        scores = torch.full((batch, num_candidates), math.nan, device=device)
        scored_rows = torch.zeros(batch, dtype=torch.bool, device=device)
        fallback = torch.zeros(batch, dtype=torch.bool, device=device)
        if len(rows) == 0:
            return Selection(first, index, probs, None, fallback, scored_rows, targets=first_targets)
        extra = extra_generator if extra_generator is not None else augment_generator
        if soft is None:
            rest = make_candidates(images[rows], self._augment, num_candidates - 1, generator=extra)
            candidate_targets = targets[rows]
        else:
            rest, rest_targets = make_candidates(
                images[rows], self._augment, num_candidates - 1, generator=extra, targets=soft[rows]
            )
            assert first_targets is not None
            candidate_targets = torch.cat([first_targets[rows].unsqueeze(1), rest_targets], dim=1)
        candidates = torch.cat([first[rows].unsqueeze(1), rest.to(first.dtype)], dim=1)
        chosen = self.select(model, candidates, candidate_targets, generator=chooser)
        inputs = first.clone()
        inputs[rows] = chosen.inputs
        index[rows], probs[rows], fallback[rows], scored_rows[rows] = chosen.index, chosen.probs, chosen.fallback, True
        if chosen.scores is not None:
            scores[rows] = chosen.scores
        chosen_targets = None
        if first_targets is not None and chosen.targets is not None:
            chosen_targets = first_targets.clone()
            chosen_targets[rows] = chosen.targets
        return Selection(
            inputs, index, probs, scores if chosen.scored else None, fallback, scored_rows, targets=chosen_targets
        )

    def weighted(
        self,
        images: Tensor,
        targets: Tensor,
        num_candidates: int,
        *,
        generator: torch.Generator | None = None,
        extra_generator: torch.Generator | None = None,
    ) -> Selection:
        """The weighted mode: every candidate of every image, ``inputs (B*M,...)`` with ``targets (B*M,)`` (the
        candidates' own soft ``(B*M,K)`` when the augmentation mixes labels), to be trained on with
        ``CandidateWeights.loss``; nothing is scored here (the training forward pass does it)."""
        candidates, candidate_targets = self._made(images, targets, num_candidates, generator, extra_generator)
        flat_targets = (
            candidate_targets.flatten(0, 1) if self.mixes_targets else targets.repeat_interleave(num_candidates, dim=0)
        )
        batch, device = images.shape[0], images.device
        return Selection(
            candidates.flatten(0, 1),
            torch.zeros(batch, dtype=torch.long, device=device),
            torch.full((batch, num_candidates), 1.0 / num_candidates, device=device),
            None,
            torch.zeros(batch, dtype=torch.bool, device=device),
            targets=flat_targets,
            weighting=CandidateWeights(num_candidates, self.temperature, self.uniform_mix),
        )
