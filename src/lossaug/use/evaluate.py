"""``lossaug evaluate``: a trained run's test error on new data laid out like its training data (a folder or an
archive of ``test/<class>/<file>``, or of ``<class>/<file>`` alone), classes matched by name, with per-class errors
and a confusion matrix (``plot_confusion``). Files are preprocessed as the run's test data (``use.inputs``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import torch
from torch import Tensor

from lossaug.data.archives import ARCHIVE_SUFFIXES, archive_members, is_archive_name
from lossaug.errors import InputError
from lossaug.run.pipeline import confusion_matrix, per_class_errors
from lossaug.use.inputs import read_inputs, suffixes_for
from lossaug.use.run import TrainedRun

__all__ = ["Evaluation", "evaluate_run", "labelled_files", "plot_confusion"]

_SPLITS = ("test", "val")  # the split evaluated, the first present; else the top level holds the class folders


@dataclass(frozen=True)
class Evaluation:
    """The run's error on the new data: ``counts (K,K)`` int64 (rows: true class, columns: predicted; K = the
    run's classes), the overall ``error``, each class's error (None for a class the data lack), and where the
    examples came from (``split``: ``test``, ``val`` or ``""`` for class folders at the top)."""

    classes: tuple[str, ...]
    counts: Tensor
    error: float
    per_class: dict[str, float | None]
    num_examples: int
    split: str

    def to_json(self) -> dict:
        return {
            "error": self.error,
            "num_examples": self.num_examples,
            "split": self.split,
            "per_class_error": self.per_class,
            "classes": list(self.classes),
            "confusion": self.counts.tolist(),
        }


def _entries(root: Path) -> list[tuple[PurePosixPath, Path | bytes]]:
    """Every file under ``root`` (a folder, or an archive read in memory) as (relative name, path or bytes)."""
    if root.is_file():
        if not is_archive_name(root):
            raise InputError(f"{root} is a file but not a folder or an archive ({', '.join(ARCHIVE_SUFFIXES)})")
        return list(archive_members(root))
    return [(PurePosixPath(p.relative_to(root).as_posix()), p) for p in sorted(root.rglob("*")) if p.is_file()]


def labelled_files(
    root: str | Path, suffixes: tuple[str, ...], classes: tuple[str, ...] = ()
) -> tuple[str, list[tuple[str, str, Path | bytes]]]:
    """``(split, [(class name, name in messages, path or bytes), ...])`` of the data files (``suffixes``) under
    ``root``: those of ``test/<class>/`` (or ``val/``), else of ``<class>/`` at the top; one folder wrapping it
    all (as archives often have) is looked into: one holding ``train/``, ``test/`` or ``val/``, or, when it is not
    one of ``classes`` (the run's), one holding only folders named as ``classes``. Hidden files are skipped; files
    sorted by name."""
    root = Path(root)
    if not root.exists():
        raise FileNotFoundError(f"data not found: {root}")
    entries = [
        (name, source) for name, source in _entries(root) if not any(part.startswith(".") for part in name.parts)
    ]
    one_top = len({name.parts[0] for name, _ in entries}) == 1 and all(len(name.parts) > 2 for name, _ in entries)
    inner = {name.parts[1] for name, _ in entries} if one_top else set()
    wraps_classes = one_top and bool(classes) and inner <= set(classes) and entries[0][0].parts[0] not in classes
    if one_top and (inner & {"train", *_SPLITS} or wraps_classes):  # wrapping, not one class's folder
        entries = [(PurePosixPath(*name.parts[1:]), source) for name, source in entries]
    present = {name.parts[0] for name, _ in entries if len(name.parts) > 2}
    split = next((s for s in _SPLITS if s in present), "")
    if not split and "train" in present:
        raise InputError(f"{root} has train/ but no test/ or val/ to evaluate on")
    depth = 1 if split else 0
    files = []
    for name, source in entries:
        parts = name.parts
        if split and parts[0] != split:
            continue
        if len(parts) < depth + 2 or PurePosixPath(parts[-1]).suffix.lower() not in suffixes:
            continue
        files.append((parts[depth], f"{root}:{name}" if root.is_file() else str(root / name), source))
    if not files:
        raise InputError(f"no {'/'.join(suffixes)} files in {root} under test/<class>/, val/<class>/ or <class>/")
    return split, sorted(files, key=lambda f: (f[0], f[1]))


def evaluate_run(run: TrainedRun, data: str | Path) -> Evaluation:
    """The error of ``run`` on the data at ``data`` (see ``labelled_files``). A class the run does not know is an
    ``InputError`` naming it; so is a file that cannot be read."""
    split, files = labelled_files(data, suffixes_for(run.inputs), run.classes)
    unknown = sorted({name for name, _, _ in files} - set(run.classes))
    if unknown:
        raise InputError(
            f"{data} has classes the run does not know: {', '.join(unknown)}; the run's classes: "
            f"{', '.join(run.classes)}"
        )
    names, inputs, failed = read_inputs(((where, source) for _, where, source in files), run.inputs)
    if failed:
        more = f" (and {len(failed) - 1} more)" if len(failed) > 1 else ""
        raise InputError(f"{failed[0].reason}{more}")
    index = {name: i for i, name in enumerate(run.classes)}
    labels = torch.tensor([index[name] for name, _, _ in files], dtype=torch.int64)
    counts = confusion_matrix(run.model, inputs, labels, len(run.classes), torch.device("cpu"), batch_size=256)
    error = 1 - int(counts.diagonal().sum()) / len(labels)
    return Evaluation(run.classes, counts, error, per_class_errors(counts, run.classes), len(labels), split)


def plot_confusion(evaluation: Evaluation, out: str | Path, *, title: str = "") -> Path:
    """Draw the confusion matrix (rows: true class, columns: predicted; each row as shares of its examples, the
    counts written in the cells) into ``out`` (PNG, PDF or SVG) and return the path."""
    from lossaug.plots import _pyplot

    plt = _pyplot()
    counts = evaluation.counts.double()
    shares = counts / counts.sum(dim=1, keepdim=True).clamp_min(1)
    size = len(evaluation.classes)
    side = min(2 + 0.55 * size, 24)
    fig, ax = plt.subplots(figsize=(side + 1.5, side))
    image = ax.imshow(shares.numpy(), cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(size), evaluation.classes, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(size), evaluation.classes, fontsize=8)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    if size <= 30:
        for row in range(size):
            for column in range(size):
                value = int(evaluation.counts[row, column])
                if value:
                    color = "white" if shares[row, column] > 0.5 else "black"
                    ax.text(column, row, str(value), ha="center", va="center", fontsize=7, color=color)
    fig.colorbar(image, ax=ax, fraction=0.046, label="share of the true class")
    heading = f"error {evaluation.error:.2%} on {evaluation.num_examples} examples"
    ax.set_title(f"{title}\n{heading}" if title else heading, fontsize=9)
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out
