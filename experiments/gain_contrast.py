"""Does selection gain more in one comparison than in another? Issue 24's pre-registered answer.

For each selection arm, the per-seed difference of differences

    D_s = (arm - control)_new,s - (arm - control)_reference,s        (test error, percentage points)

paired by seed over the seeds both comparisons finished, with its 95% t-interval: the arm "gains more" in the new
comparison when the whole interval lies below 0, "gains less" when above, and otherwise "no difference shown".
Each side's own gain (arm - control, paired by seed) is printed beside it.

Reads only the runs' ``final.json`` files (``<comparison>/setting-<S>/<arm>/seed-<N>/final.json``); writes
``contrast.json`` and ``contrast.md`` into ``--out``. Example (issue 24, strong candidates against flip + crop):

    python experiments/gain_contrast.py --new docs/results/frontier/transfer-C:C \\
        --reference docs/results/frontier/transfer:A --out docs/results/frontier/transfer-C
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

from lossaug.compare.stats import PairedDifference, paired_difference
from lossaug.errors import InputError
from lossaug.run.runfiles import read_json

DEFAULT_ARMS = ("proposed",)


@dataclass(frozen=True)
class Side:
    """One comparison's runs: its directory and the setting whose arms are read."""

    comparison: Path
    setting: str

    @classmethod
    def parse(cls, text: str) -> Side:
        path, sep, setting = text.rpartition(":")
        if not sep or not path or not setting:
            raise InputError(f"expected COMPARISON_DIR:SETTING, got {text!r}")
        return cls(Path(path), setting)

    def errors(self, arm: str) -> dict[int, float]:
        """seed -> test error in percentage points of every finished run of ``arm``."""
        arm_dir = self.comparison / f"setting-{self.setting}" / arm
        if not arm_dir.is_dir():
            raise InputError(f"{arm_dir}: no such arm directory")
        found = {}
        for final in sorted(arm_dir.glob("seed-*/final.json")):
            seed = final.parent.name.removeprefix("seed-")
            if not seed.isdigit():
                raise InputError(f"{final.parent}: not a seed-N run directory")
            found[int(seed)] = 100 * read_json(final, {"test_error": (int, float)})["test_error"]
        return found


@dataclass(frozen=True)
class Contrast:
    arm: str
    seeds: list[int]
    gain_new: PairedDifference  # (arm - control) in the new comparison
    gain_reference: PairedDifference  # (arm - control) in the reference
    difference: PairedDifference  # D_s

    @property
    def verdict(self) -> str:
        if self.difference.high < 0:
            return "gains more"
        if self.difference.low > 0:
            return "gains less"
        return "no difference shown"

    def to_json(self) -> dict:
        return {"arm": self.arm, "seeds": self.seeds, "verdict": self.verdict,
                "gain_new": self.gain_new.to_json(), "gain_reference": self.gain_reference.to_json(),
                "difference": self.difference.to_json()}  # fmt: skip


def gains(side: Side, arm: str, control: str) -> dict[int, float]:
    """seed -> (arm - control) test error of every seed where both finished."""
    arm_errors, control_errors = side.errors(arm), side.errors(control)
    return {s: arm_errors[s] - control_errors[s] for s in sorted(arm_errors.keys() & control_errors.keys())}


def contrast(new: dict[int, float], reference: dict[int, float], arm: str) -> Contrast:
    """Difference of per-seed gains over the seeds both sides hold (at least two)."""
    seeds = sorted(new.keys() & reference.keys())
    if len(seeds) < 2:
        raise InputError(f"{arm}: {len(seeds)} seed(s) finished in both comparisons; a paired interval needs 2")
    return Contrast(arm, seeds, paired_difference([new[s] for s in seeds]),
                    paired_difference([reference[s] for s in seeds]),
                    paired_difference([new[s] - reference[s] for s in seeds]))  # fmt: skip


def _cell(d: PairedDifference) -> str:
    return f"{d.mean:+.2f} ± {d.half_width:.2f}"


def markdown(rows: list[Contrast], new: Side, reference: Side, control: str) -> str:
    lines = [f"# Gain contrast: {new.comparison} (setting {new.setting}) against {reference.comparison} "
             f"(setting {reference.setting})", "",
             f"Gain = arm − {control}, test error in points, paired by seed; D = gain(new) − gain(reference), "
             "95% t-intervals. \"gains more\" when D's interval lies below 0, \"gains less\" when above.", "",
             "| arm | n | gain, new | gain, reference | D | verdict |", "|---|---|---|---|---|---|"]  # fmt: skip
    for row in rows:
        lines.append(f"| {row.arm} | {len(row.seeds)} | {_cell(row.gain_new)} | {_cell(row.gain_reference)} "
                     f"| {_cell(row.difference)} | {row.verdict} |")  # fmt: skip
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--new", required=True, help="COMPARISON_DIR:SETTING of the comparison asked about")
    parser.add_argument("--reference", required=True, help="COMPARISON_DIR:SETTING it is measured against")
    parser.add_argument("--arms", default=",".join(DEFAULT_ARMS), help="selection arms, comma-separated")
    parser.add_argument("--control", default="baseline", help="the arm each gain is measured from")
    parser.add_argument("--out", type=Path, required=True, help="folder for contrast.json and contrast.md")
    args = parser.parse_args(argv)
    try:
        new, reference = Side.parse(args.new), Side.parse(args.reference)
        arms = [a for a in args.arms.split(",") if a]
        if not arms:
            raise InputError(f"--arms names no arm: {args.arms!r}")
        rows = [contrast(gains(new, arm, args.control), gains(reference, arm, args.control), arm) for arm in arms]
    except InputError as error:
        print(f"gain_contrast: error: {error}", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    record = {"new": args.new, "reference": args.reference, "control": args.control,
              "rows": [row.to_json() for row in rows]}  # fmt: skip
    (args.out / "contrast.json").write_text(json.dumps(record, indent=2) + "\n")
    text = markdown(rows, new, reference, args.control)
    (args.out / "contrast.md").write_text(text)
    print(text, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
