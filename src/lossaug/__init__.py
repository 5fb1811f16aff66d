"""lossaug: loss-aware augmentation selection.

For each image, make M augmented candidates, score each with the model's current per-sample loss (no gradient),
and train on one sampled with probability proportional to its score.
"""

import importlib.abc
import importlib.util
import sys
from importlib.machinery import ModuleSpec
from types import ModuleType

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


# Modules that moved into packages keep their old import paths (README, docs and examples named them): importing
# an old path gives the module at its new one, the same object under both names.
_MOVED = {
    **{f"lossaug.{name}": f"lossaug.run.{name}" for name in ("config", "train", "metadata", "runfiles")},
    "lossaug.audio": "lossaug.models.audio",
}


class _MovedModules(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds an old module path of ``_MOVED`` and loads it as the module at its new path."""

    def find_spec(self, fullname: str, path: object = None, target: object = None) -> ModuleSpec | None:
        return importlib.util.spec_from_loader(fullname, self) if fullname in _MOVED else None

    def create_module(self, spec: ModuleSpec) -> ModuleType:
        return importlib.import_module(_MOVED[spec.name])

    def exec_module(self, module: ModuleType) -> None:
        """Nothing: the module ran when it was imported under its new path."""


sys.meta_path.append(_MovedModules())
