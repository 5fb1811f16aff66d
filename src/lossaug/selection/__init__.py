"""Loss-aware selection: score M augmented candidates per image with the model, sample one in proportion.

The method is four small pure steps (``core`` and ``probs``), each usable alone: ``make_candidates``,
``score_candidates``, ``selection_probs``, then ``sample_index`` and ``gather_selected``. ``select_candidates``
runs the last three; ``LossAwareAugment`` (``loss_aware``) runs all four for a user's own training loop, and the
cheap modes' pure parts (``gate_rows``, ``CandidateWeights``) live in ``modes``. Every public name is re-exported
here, so ``from lossaug.selection import ...`` does not depend on which file holds it.
"""

from lossaug.selection.core import (
    BN_MODES,
    SCORES,
    Candidates,
    LossFn,
    ScoringOptions,
    Selection,
    gather_selected,
    make_candidates,
    score_candidates,
    select_candidates,
)
from lossaug.selection.loss_aware import LossAwareAugment
from lossaug.selection.modes import MODES, CandidateWeights, check_score_fraction, gate_rows
from lossaug.selection.probs import probs_entropy, sample_index, selection_probs

__all__ = [
    "BN_MODES",
    "MODES",
    "SCORES",
    "CandidateWeights",
    "Candidates",
    "LossAwareAugment",
    "LossFn",
    "ScoringOptions",
    "Selection",
    "check_score_fraction",
    "gate_rows",
    "gather_selected",
    "make_candidates",
    "probs_entropy",
    "sample_index",
    "score_candidates",
    "select_candidates",
    "selection_probs",
]
