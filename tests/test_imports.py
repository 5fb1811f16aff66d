"""Every import path the README, docs/*.md and examples/*.py name still works: ``from lossaug.x import Y`` lines,
``import lossaug.x`` lines and dotted names such as ``lossaug.data.MultiView`` in the text. Modules move into
subpackages whose ``__init__`` re-exports their public names; this test is what keeps those promises.
"""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

import lossaug

REPO = Path(__file__).resolve().parents[1]
SOURCES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md")), *sorted((REPO / "examples").glob("*.py"))]

_FROM_IMPORT = re.compile(r"^\s*from\s+(lossaug(?:\.\w+)*)\s+import\s+(\([^)]*\)|[^\n#]+)", re.M)
_IMPORT = re.compile(r"^\s*import\s+(lossaug(?:\.\w+)*)", re.M)
_DOTTED = re.compile(r"(?<![\w./-])(lossaug(?:\.[A-Za-z_]\w*)+)")


def _documented_paths() -> list[tuple[str, str]]:
    """``(dotted path, file it is named in)``, each path once, in file order."""
    found: dict[str, str] = {}
    for source in SOURCES:
        text = source.read_text(encoding="utf-8")
        where = source.relative_to(REPO).as_posix()
        for module, names in _FROM_IMPORT.findall(text):
            for name in re.split(r"[\s,()]+", names):
                name = name.split(" as ")[0].strip()
                if name and name.isidentifier():
                    found.setdefault(f"{module}.{name}", where)
        for module in _IMPORT.findall(text):
            found.setdefault(module, where)
        for dotted in _DOTTED.findall(text):
            found.setdefault(dotted.removesuffix(".py"), where)
    return sorted(found.items())


PATHS = _documented_paths()


def _resolve(dotted: str) -> object:
    """The object ``dotted`` names: the longest importable module prefix, then attributes."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError as error:
            if error.name is not None and not ".".join(parts[:cut]).startswith(error.name):
                raise  # a missing dependency inside a module that exists is a real failure
            continue
        for attribute in parts[cut:]:
            obj = getattr(obj, attribute)
        return obj
    raise ModuleNotFoundError(dotted)


def test_the_documents_name_import_paths():
    # A guard against a regex that silently finds nothing: the README and docs name dozens.
    assert len(PATHS) >= 20, PATHS
    assert "lossaug.data.MultiView" in dict(PATHS)
    assert "lossaug.data.load_dataset" in dict(PATHS)


@pytest.mark.parametrize(("dotted", "where"), PATHS, ids=[dotted for dotted, _ in PATHS])
def test_documented_import_path_works(dotted: str, where: str):
    try:
        _resolve(dotted)
    except (ImportError, AttributeError) as error:
        pytest.fail(f"{where} names {dotted}, which does not import: {error}")


@pytest.mark.parametrize(
    "package",
    ["lossaug", "lossaug.data", "lossaug.augment", "lossaug.augment.audio", "lossaug.models.audio", "lossaug.compare"],
)
def test_every_public_name_of_a_package_is_importable_from_it(package: str):
    module = importlib.import_module(package)
    missing = [name for name in module.__all__ if not hasattr(module, name)]
    assert not missing, f"{package}.__all__ names {missing}, which it does not define"


@pytest.mark.parametrize("old", sorted(lossaug._MOVED))
def test_a_moved_module_keeps_its_old_path(old: str):
    # The same module object under both names: patching through either path patches the one the code uses.
    assert importlib.import_module(old) is importlib.import_module(lossaug._MOVED[old])


def test_an_unknown_module_is_still_not_found():
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("lossaug.no_such_module")
