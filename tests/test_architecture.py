"""docs/ARCHITECTURE.md is true of the tree: its table names every module of src/lossaug, and every module-level
import points to the module's own row or a row above it. And the structure keeps the limits it was built to: no
function over 80 lines, no module over 500, few ``# fmt: skip`` markers, at most 12 top-level modules, a data
kind's name and a method's name each read in a few files only, no threads in the demo.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SRC = REPO / "src"
PACKAGE = SRC / "lossaug"
MODULES = sorted(PACKAGE.rglob("*.py"))


def _dotted(path: Path) -> str:
    return ".".join(path.relative_to(SRC).with_suffix("").parts).removesuffix(".__init__")


def _table_rows() -> list[list[str]]:
    """Per row of the architecture table, the dotted names its first column gives (``run/config.py`` ->
    ``lossaug.run.config``, ``data/`` -> ``lossaug.data``, ``__init__.py`` -> ``lossaug``)."""
    text = (REPO / "docs" / "ARCHITECTURE.md").read_text(encoding="utf-8")
    rows = []
    for line in text.splitlines():
        if not line.startswith("| `"):
            continue
        cells = re.findall(r"`([^`]+)`", line.split("|")[1])
        rows.append([_name_of(cell) for cell in cells])
    return rows


def _name_of(cell: str) -> str:
    parts = cell.rstrip("/").removesuffix(".py").split("/")
    return ".".join(["lossaug", *[part for part in parts if part != "__init__"]])


ROWS = _table_rows()


def _row_of(module: str) -> int | None:
    """The row of the longest table entry that is ``module`` or a package holding it."""
    best: tuple[int, int] | None = None
    for index, row in enumerate(ROWS):
        for entry in row:
            if (module == entry or module.startswith(entry + ".")) and (best is None or len(entry) > best[1]):
                best = (index, len(entry))
    return None if best is None else best[0]


def _module_level_imports(path: Path) -> list[str]:
    """The lossaug modules ``path`` imports when it is imported (not inside functions, not for type checking)."""
    found = []
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            continue
        for sub in ast.walk(node) if isinstance(node, (ast.If, ast.Try)) else [node]:
            if isinstance(sub, ast.ImportFrom) and sub.module and sub.module.split(".")[0] == "lossaug":
                found += [f"lossaug.{a.name}" for a in sub.names] if sub.module == "lossaug" else [sub.module]
            elif isinstance(sub, ast.Import):
                found += [a.name for a in sub.names if a.name.split(".")[0] == "lossaug"]
    return found


def test_the_table_has_rows_and_names_only_what_exists():
    assert len(ROWS) >= 10, ROWS  # a guard against a parser that silently finds nothing
    known = {_dotted(path) for path in MODULES}
    missing = [entry for row in ROWS for entry in row if entry not in known]
    assert not missing, f"docs/ARCHITECTURE.md names modules that do not exist: {missing}"


def test_the_table_covers_every_module():
    unplaced = [_dotted(path) for path in MODULES if _row_of(_dotted(path)) is None]
    assert not unplaced, f"modules docs/ARCHITECTURE.md does not place: {unplaced}"


def test_module_level_imports_go_down_the_table():
    upward = []
    for path in MODULES:
        module = _dotted(path)
        row = _row_of(module)
        for imported in _module_level_imports(path):
            target = _row_of(imported)
            if row is not None and target is not None and target > row:
                upward.append(f"{module} (row {row}) imports {imported} (row {target})")
    assert not upward, "\n".join(upward)


def _function_lengths() -> list[tuple[str, int]]:
    found = []
    for path in MODULES:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
                found.append((f"{_dotted(path)}.{node.name}", node.end_lineno - first + 1))
    return found


def test_no_function_over_80_lines_and_no_module_over_500():
    lengths = _function_lengths()
    assert len(lengths) > 500  # every function was read
    assert [(name, n) for name, n in lengths if n > 80] == []
    long_modules = [(_dotted(p), n) for p in MODULES if (n := len(p.read_text(encoding="utf-8").splitlines())) > 500]
    assert long_modules == []


def _files_matching(pattern: str) -> list[str]:
    regex = re.compile(pattern)
    return [_dotted(p) for p in MODULES if regex.search(p.read_text(encoding="utf-8"))]


def test_limits_met_by_design_not_by_packing():
    markers = sum(p.read_text(encoding="utf-8").count("# fmt: skip") for p in MODULES)
    assert markers <= 20, f"{markers} '# fmt: skip' markers in src/lossaug"
    top_level = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert len(top_level) <= 12, top_level


@pytest.mark.parametrize(
    ("what", "pattern", "most"),
    [
        ("the audio kind's name", r'"audio"', 3),
        (
            "a method's name compared",
            r'(==|!=|\bin\b) *\(?"(proposed|baseline|maxup|weighted)"|"(proposed|baseline|maxup|weighted)" *'
            r"(==|!=|in\b)|method *(==|!=|in)\b",
            3,
        ),
    ],
)
def test_a_kind_or_a_method_is_named_in_few_files(what: str, pattern: str, most: int):
    files = _files_matching(pattern)
    assert len(files) <= most, f"{what} in {len(files)} files: {files}"


def test_the_demo_runs_in_one_thread():
    threaded = _files_matching(r"\bthreading\b|\bThread\(")
    assert "lossaug.run.interrupts" in threaded  # the pattern finds what it looks for (a main-thread check)
    assert [name for name in threaded if name.startswith("lossaug.demo")] == []
