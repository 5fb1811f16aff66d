"""Reading a run's own files back with every value checked: ``config.json``, ``final.json``, ``metrics.jsonl`` and a
comparison's ``cost_ratio.json``.

A summary or a report computed from a broken file is wrong without a word (an empty ``metrics.jsonl`` once halved a
time ratio), so a file that is not what lossaug writes is an ``InputError`` naming it, the line in a ``.jsonl``,
and what is wrong: one line in the CLI, exit 2. ``fields`` maps a key to the types its value may have: ``NUMBER``
(an int or a float, never a bool), ``INT``, ``(str, NONE)``, ... and, for a number, the ``Range`` it must lie in:
``FRACTION`` (an error), ``SECONDS``, ``COUNT`` (epochs, examples, classes). NaN and inf lie in none of them.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from lossaug.errors import InputError

__all__ = [
    "COUNT",
    "FRACTION",
    "INT",
    "NONE",
    "NUMBER",
    "SECONDS",
    "Range",
    "check_fields",
    "read_json",
    "read_records",
]


@dataclass(frozen=True)
class Range:
    """The closed interval a number read back must lie in (a test error of 3.5 or seconds of -1 is no result)."""

    low: float
    high: float

    def __contains__(self, value: float) -> bool:
        try:
            return math.isfinite(value) and self.low <= value <= self.high
        except OverflowError:  # an int past any float (JSON allows 10**400)
            return False


NUMBER = (int, float)
INT = (int,)
NONE = type(None)
FRACTION = (int, float, Range(0.0, 1.0))  # an error rate
SECONDS = (int, float, Range(0.0, 1e9))  # wall-clock: 1e9 s is 30 years, far past any run; 1e308 overflowed sums
COUNT = (int, Range(0, 10**9))  # epochs, test examples, classes


def _fits(value: Any, kinds: tuple[Any, ...]) -> bool:
    types = tuple(kind for kind in kinds if isinstance(kind, type))
    if isinstance(value, bool):  # JSON's true is no number
        return bool in types
    ranges = [kind for kind in kinds if isinstance(kind, Range)]
    return isinstance(value, types) and all(cast(float, value) in bounds for bounds in ranges)


def _describe(kinds: tuple[Any, ...]) -> str:
    bounds = [kind for kind in kinds if isinstance(kind, Range)]
    return f" (expected a finite number in [{bounds[0].low:g}, {bounds[0].high:g}])" if bounds else ""


def check_fields(
    record: Mapping[str, Any],
    fields: Mapping[str, tuple[Any, ...]],
    where: str,
    optional: Mapping[str, tuple[Any, ...]] | None = None,
) -> None:
    """Raise ``InputError`` naming ``where`` when ``record`` lacks any of ``fields`` or holds a value of another
    type there or in ``optional`` (keys older versions did not write)."""
    missing = [key for key in fields if key not in record]
    typed = {**(optional or {}), **fields}
    wrong = [
        f"{key} {value!r}{_describe(kinds)}"
        for key, kinds in typed.items()
        if key in record and not _fits(value := record[key], kinds)
    ]
    if missing or wrong:
        parts = ([f"lacks {', '.join(missing)}"] if missing else []) + (
            [f"has an impossible value or one of the wrong type: {', '.join(wrong)}"] if wrong else []
        )
        what = "; ".join(parts)
        raise InputError(f"{where} {what} (not as lossaug writes it: damaged, or from another version?)")


def _parse(text: str, where: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise InputError(
            f"{where} is not valid JSON: {error.msg} (line {error.lineno} column {error.colno}); cut short or damaged?"
        ) from None


def read_json(
    path: Path,
    fields: Mapping[str, tuple[Any, ...]] | None = None,
    optional: Mapping[str, tuple[Any, ...]] | None = None,
) -> dict[str, Any]:
    """The JSON object in ``path``, with ``fields`` (and ``optional`` ones where present) checked;
    ``FileNotFoundError`` when it does not exist."""
    path = Path(path)
    try:
        text = path.read_text()
    except UnicodeDecodeError:
        raise InputError(f"{path} is not valid JSON: not UTF-8 text") from None
    if not text.strip():
        raise InputError(f"{path} is empty: cut short, or not written by lossaug")
    payload = _parse(text, str(path))
    if not isinstance(payload, dict):
        raise InputError(f"{path} holds a JSON {type(payload).__name__}, not an object")
    check_fields(payload, fields or {}, str(path), optional)
    return payload


def read_records(path: Path, fields: Mapping[str, tuple[Any, ...]] | None = None) -> list[dict[str, Any]]:
    """The epoch records of a ``metrics.jsonl`` (one JSON object per line, each with an integer ``epoch`` and
    ``fields``), blank lines skipped; ``FileNotFoundError`` when it does not exist."""
    path = Path(path)
    records = []
    for number, line in enumerate(Path(path).read_text(errors="replace").splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path} line {number}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise InputError(f"{where} is not valid JSON: {error.msg}") from None
        if type(record.get("epoch") if isinstance(record, dict) else None) is not int:
            raise InputError(f"{where} is not an epoch record (no integer 'epoch')")
        check_fields(record, fields or {}, where)
        records.append(record)
    return records
