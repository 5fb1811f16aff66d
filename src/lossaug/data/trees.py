"""Class-folder trees, ``{"train": {class: [file, ...]}, "test": {...}}``, the layout image and audio folders share:
scanned from ``root/{train,test}/<class>/...`` on disk or built from an archive's members in memory (one
wrapping top folder allowed), their classes checked, their files listed in load order. A class folder is searched
recursively (torchvision's ``ImageFolder`` convention: ``circle/day1/a.png`` is a ``circle``). A folder of
``root/<class>/...`` with no ``train/`` and ``test/`` is an unsplit tree, ``{UNSPLIT: {class: [file, ...]}}``, which
``split.split_tree`` divides.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path, PurePosixPath
from typing import Any

from lossaug.data.archives import wrapping_folder
from lossaug.errors import InputError

__all__ = [
    "TEST_SPLIT_NAMES",
    "UNSPLIT",
    "Tree",
    "check_classes",
    "has_suffix",
    "scan_class_folders",
    "tree_files",
    "tree_from_members",
]

Tree = dict[str, dict[str, list[Any]]]  # split name ("train"/"test") -> class name -> files in load order

TEST_SPLIT_NAMES = ("test", "val")  # the first that exists is the test split
UNSPLIT = "all"  # the one "split" of a folder with no train/ and test/: every class's files, to be split


def has_suffix(name: str, suffixes: tuple[str, ...]) -> bool:
    """Whether a file ``name`` is a data file: not hidden, ending in one of ``suffixes`` (any case)."""
    return not name.startswith(".") and name.lower().endswith(suffixes)


def class_files(folder: Path, suffixes: tuple[str, ...]) -> list[Path]:
    """The data files anywhere under ``folder`` (hidden files and folders skipped), sorted by relative path."""
    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        found += [Path(dirpath, f) for f in filenames if has_suffix(f, suffixes)]
    return sorted(found, key=lambda path: path.relative_to(folder).as_posix())


def _scan_classes(split_dir: Path, suffixes: tuple[str, ...], make: Callable[[str, Path], Any], noun: str):
    """``{class: [make(where, path), ...]}`` of ``split_dir/<class>/...``, each class folder searched recursively."""
    classes: dict[str, list[Any]] = {}
    for entry in sorted(os.scandir(split_dir), key=lambda e: e.name):
        if entry.name.startswith("."):
            continue
        if entry.is_dir():
            files = class_files(Path(entry.path), suffixes)
            if not files:
                raise InputError(
                    f"class folder {entry.path} has no {noun}s ({', '.join(suffixes)}), in it or in its subfolders"
                )
            classes[entry.name] = [make(str(path), path) for path in files]
        elif has_suffix(entry.name, suffixes):
            raise InputError(f"{noun} {entry.path} is not in a class folder; expected {split_dir}/<class>/<{noun}>")
    if not classes:
        raise InputError(f"folder {split_dir} has no class folders; expected {split_dir}/<class>/<{noun}>")
    return classes


def scan_class_folders(
    root: Path, suffixes: tuple[str, ...], make: Callable[[str, Path], Any], noun: str = "image"
) -> dict[str, dict[str, list[Any]]]:
    """``{"train": {class: [make(where, path), ...]}, "test": {...}}`` of ``root/train/<class>/...`` and
    ``root/test/<class>/...`` (or ``val/``), or ``{UNSPLIT: {...}}`` of ``root/<class>/...`` when ``root`` has
    neither ``train/`` nor a test folder. Files are those ending in ``suffixes`` (any case) anywhere under a class
    folder, in relative-path order; hidden entries skipped. A layout error is an ``InputError`` (a missing split a
    ``FileNotFoundError``) naming the folder and the layout expected (``noun``: what a file is called)."""
    layout = (
        f"expected {root}/train/<class>/<{noun}> and {root}/test/<class>/<{noun}> (or val/), or {root}/<class>/<{noun}>"
        " with --test-fraction"
    )
    test_dir = next((root / n for n in TEST_SPLIT_NAMES if (root / n).is_dir()), None)
    if not (root / "train").is_dir():
        if test_dir is None:
            return {UNSPLIT: _scan_classes(root, suffixes, make, noun)}
        raise FileNotFoundError(f"no train folder in {root}; {layout}")
    if test_dir is None:
        raise FileNotFoundError(f"no test (or val) folder in {root}; {layout}")
    return {
        "train": _scan_classes(root / "train", suffixes, make, noun),
        "test": _scan_classes(test_dir, suffixes, make, noun),
    }


def tree_from_members(
    members: Iterable[tuple[PurePosixPath, bytes]], make: Callable[[str, bytes], Any], where: str
) -> Tree:
    """A tree of ``make(where:name, bytes)`` from archive ``members`` (already filtered to data files):
    ``train/<class>/<file>`` and ``test/<class>/<file>`` (or ``val/``), optionally inside one wrapping top folder
    (``archives.wrapping_folder``), files in name order; a class folder's subfolders belong to it. Members under
    no ``train/`` (nor test folder) give an unsplit tree ``{UNSPLIT: {class: [...]}}`` of ``<class>/...``. A split
    with no files is left empty for the caller."""
    members = list(members)
    top = wrapping_folder({name.parts[0]: len(name.parts) > 1 for name, _ in members})
    strip = 0 if top is None else 1
    splits_present = {name.parts[strip] for name, _ in members if len(name.parts) >= 3 + strip}
    test_name = next((n for n in TEST_SPLIT_NAMES if n in splits_present), None)
    if "train" not in splits_present and test_name is None:
        unsplit: Tree = {UNSPLIT: {}}
        for name, data in sorted(members, key=lambda member: member[0]):
            if len(name.parts[strip:]) >= 2:
                unsplit[UNSPLIT].setdefault(name.parts[strip], []).append(make(f"{where}:{name}", data))
        return unsplit
    tree: Tree = {"train": {}, "test": {}}
    for name, data in sorted(members, key=lambda member: member[0]):
        parts = name.parts[strip:]
        if len(parts) >= 3 and parts[0] in ("train", test_name):
            split = "train" if parts[0] == "train" else "test"
            tree[split].setdefault(parts[1], []).append(make(f"{where}:{name}", data))
    return tree


def check_classes(tree: dict[str, dict[str, list[Any]]], where: str) -> tuple[str, ...]:
    """The sorted class names of a ``{"train": {class: files}, "test": {...}}`` tree, whose splits must hold the
    same classes (else an ``InputError`` naming ``where`` and the classes only one split has)."""
    train, test = set(tree["train"]), set(tree["test"])
    if train != test:
        raise InputError(
            f"{where}: test classes differ from train classes; only in train: {sorted(train - test)}, "
            f"only in test: {sorted(test - train)}"
        )
    return tuple(sorted(train))


def tree_files(tree: dict[str, dict[str, list[Any]]]) -> Iterator[Any]:
    """Every file of a tree in load order: train then test (or the unsplit files), classes in sorted order, files
    as listed."""
    for split in ("train", "test", UNSPLIT):
        for name in sorted(tree.get(split, {})):
            yield from tree[split][name]
