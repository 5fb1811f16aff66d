"""lossaug: loss-aware augmentation selection.

For each image, make M augmented candidates, score each with the model's current per-sample loss (no gradient),
and train on one sampled with probability proportional to its score.
"""

from lossaug import augment
from lossaug.selection import (
    LossAwareAugment,
    Selection,
    gather_selected,
    make_candidates,
    sample_index,
    score_candidates,
    select_candidates,
    selection_probs,
)

__version__ = "0.1.0"

__all__ = [
    "LossAwareAugment",
    "Selection",
    "augment",
    "gather_selected",
    "make_candidates",
    "sample_index",
    "score_candidates",
    "select_candidates",
    "selection_probs",
]
