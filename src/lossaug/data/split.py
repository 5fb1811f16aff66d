"""Splitting a folder that has no ``train/`` and ``test/``: ``split_tree`` divides each class's files into a
training and a test part (stratified: every class keeps its share), seeded and independent of everything but the
class's file names, the fraction and the seed, so the same data and seed give the same files every run. Also the
folder options every folder source shares (``check_folder_options``) and what a split records (``SplitRecord``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
from dataclasses import dataclass
from typing import Any

import torch

from lossaug.data.trees import UNSPLIT, Tree
from lossaug.data.types import File
from lossaug.errors import InputError

__all__ = ["check_folder_options", "held_out_rows", "resolve_split", "split_tree"]


def check_folder_options(test_fraction: float | None, split_seed: int) -> None:
    """``test_fraction`` None or in (0, 1), ``split_seed`` an int; else an ``InputError`` naming the value."""
    if test_fraction is not None and (
        isinstance(test_fraction, bool) or not isinstance(test_fraction, (int, float)) or not 0 < test_fraction < 1
    ):
        raise InputError(f"test_fraction must be in (0, 1) or None, got {test_fraction!r}")
    if isinstance(split_seed, bool) or not isinstance(split_seed, int):
        raise InputError(f"split_seed must be an int, got {split_seed!r}")


def _class_seed(seed: int, name: str) -> int:
    """One generator seed per class, from the split seed and the class name: adding a class moves no other."""
    digest = hashlib.sha256(f"lossaug-split\0{seed}\0{name}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def _test_count(count: int, test_fraction: float) -> int:
    """Test files of a class of ``count``: the fraction rounded, at least 1, leaving at least 1 to train on."""
    return min(count - 1, max(1, math.floor(test_fraction * count + 0.5)))


def held_out_rows(count: int, fraction: float, seed: int, name: str) -> torch.Tensor:
    """Positions ``(k,)`` among a class's ``count`` members that a split holds out: the first
    ``round(fraction * count)`` (at least 1, at most ``count - 1``) of a permutation seeded by ``seed`` and ``name``."""
    generator = torch.Generator().manual_seed(_class_seed(seed, name))
    return torch.randperm(count, generator=generator)[: _test_count(count, fraction)]


@dataclass(frozen=True)
class SplitRecord:
    """What ``split_tree`` did: the fraction and seed, counts per class and a sha256 of the test files' names."""

    test_fraction: float
    seed: int
    train_counts: dict[str, int]
    test_counts: dict[str, int]
    test_files_sha256: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "test_fraction": self.test_fraction,
            "seed": self.seed,
            "train_counts": dict(self.train_counts),
            "test_counts": dict(self.test_counts),
            "test_files_sha256": self.test_files_sha256,
        }

    def counted(self, tree: Tree) -> SplitRecord:
        """This split with the counts of ``tree`` (the split tree once undecodable files were left out)."""
        return dataclasses.replace(
            self,
            train_counts={c: len(files) for c, files in tree["train"].items()},
            test_counts={c: len(files) for c, files in tree["test"].items()},
        )

    def summary(self) -> str:
        """One line: the counts per class, train / test."""
        counts = ", ".join(f"{c} {self.train_counts[c]}/{self.test_counts[c]}" for c in sorted(self.train_counts))
        return (
            f"split {self.test_fraction:g} of each class off for testing (split seed {self.seed}); "
            f"train/test per class: {counts}"
        )


def split_tree(tree: Tree, test_fraction: float, seed: int, where: str) -> tuple[Tree, SplitRecord]:
    """``{"train": ..., "test": ...}`` from an unsplit tree ``{UNSPLIT: {class: [File, ...]}}``: per class, a seeded
    permutation of its files (in their listed order) puts ``round(test_fraction * n)`` (at least 1, at most n-1)
    in the test split; each split keeps the listed order. A class of one file is an ``InputError`` naming it."""
    check_folder_options(test_fraction, seed)
    out: Tree = {"train": {}, "test": {}}
    digest = hashlib.sha256()
    for name in sorted(tree[UNSPLIT]):
        files: list[File] = tree[UNSPLIT][name]
        if len(files) < 2:
            raise InputError(f"{where}: class {name!r} has {len(files)} file; splitting off a test set needs 2 or more")
        test_rows = set(held_out_rows(len(files), test_fraction, seed, name).tolist())
        out["train"][name] = [f for i, f in enumerate(files) if i not in test_rows]
        out["test"][name] = [f for i, f in enumerate(files) if i in test_rows]
        for f in out["test"][name]:
            digest.update(f"{name}\0{f.where.removeprefix(where)}\0".encode())
    record = SplitRecord(
        float(test_fraction),
        seed,
        {c: len(files) for c, files in out["train"].items()},
        {c: len(files) for c, files in out["test"].items()},
        digest.hexdigest(),
    )
    return out, record


def resolve_split(tree: Tree, test_fraction: float | None, seed: int, where: str) -> tuple[Tree, SplitRecord | None]:
    """A split tree as loaders need it: an unsplit one split by ``test_fraction`` (required then), a split one as
    it is (``test_fraction`` must be None then). ``where`` names the folder in errors."""
    if UNSPLIT not in tree:
        if test_fraction is not None:
            raise InputError(
                f"test_fraction (--test-fraction) splits a folder of <class>/ folders, but {where} is split already "
                "(train/ and test/): drop the option"
            )
        return tree, None
    if test_fraction is None:
        raise InputError(
            f"{where} has class folders but no train/ and test/ folders: pass test_fraction (--test-fraction, e.g. "
            "0.2) to split off a test set, stratified per class"
        )
    return split_tree(tree, test_fraction, seed, where)
