"""Files that cannot be decoded (a truncated JPEG, a WAV that is not audio): by default every one is collected and
the load refused with all of them listed; with ``skip_bad`` they are left out, logged, and returned by name so
that a run can list them in its directory. ``decode_tree`` is what image and audio folders share.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from lossaug.data.trees import Tree, tree_files
from lossaug.data.types import File, Log
from lossaug.errors import InputError

__all__ = ["MAX_LISTED", "decode_tree", "refusal"]

MAX_LISTED = 10  # bad files named in the refusal; the rest are counted ("and N more")

T = TypeVar("T")


def refusal(bad: list[str], noun: str) -> str:
    """The one-line refusal for ``bad`` (``"file: reason"`` each), the first ``MAX_LISTED`` named."""
    listed = "; ".join(bad[:MAX_LISTED])
    more = f"; and {len(bad) - MAX_LISTED} more" if len(bad) > MAX_LISTED else ""
    return (
        f"{len(bad)} {noun} file{'s' if len(bad) != 1 else ''} cannot be decoded: {listed}{more}; fix or remove "
        "them, or pass skip_bad (--skip-bad) to train without them"
    )


def decode_tree(
    tree: Tree, decode: Callable[[File], T], skip_bad: bool, noun: str, log: Log
) -> tuple[list[T], Tree, tuple[str, ...]]:
    """``(decoded, kept, skipped)``: ``decode(file)`` of every file of ``tree`` in load order (``tree_files``), the
    tree without the files whose decoding raised an ``InputError`` (``decoded`` is in ``kept``'s load order), and
    those files' names. Unless ``skip_bad``, any such file is an ``InputError`` naming every one (``refusal``).
    ``noun``: what messages call the files, the data kind's name (``types.IMAGE_KIND``, ``types.AUDIO_KIND``)."""
    decoded: list[Any] = []
    bad: list[str] = []
    failed: set[str] = set()
    for file in tree_files(tree):
        try:
            decoded.append(decode(file))
        except InputError as error:
            failed.add(file.where)
            bad.append(str(error).removeprefix(f"cannot decode {noun} ").removeprefix("cannot read audio file "))
    if not failed:
        return decoded, tree, ()
    if not skip_bad:
        raise InputError(refusal(bad, noun))
    kept: Tree = {
        split: {c: [f for f in files if f.where not in failed] for c, files in classes.items()}
        for split, classes in tree.items()
    }
    skipped = tuple(f.where for f in tree_files(tree) if f.where in failed)
    more = f" and {len(skipped) - MAX_LISTED} more" if len(skipped) > MAX_LISTED else ""
    plural = "s" if len(skipped) != 1 else ""
    log(f"skipped {len(skipped)} {noun} file{plural} that cannot be decoded: {', '.join(skipped[:MAX_LISTED])}{more}")
    for split, classes in kept.items():
        for c, files in classes.items():
            if not files and tree[split][c]:
                where = tree[split][c][0].where
                raise InputError(f"no {noun} of class {c!r} ({split}) can be decoded; e.g. {where}")
    return decoded, kept, skipped
