"""``format_bench``: a ``BenchResult`` as the plain-text table ``lossaug bench`` prints."""

from __future__ import annotations

from lossaug.bench.config import SETTINGS, BenchConfig, width_of
from lossaug.bench.results import BenchResult
from lossaug.kinds import kind_of_model


def _input_size(config: BenchConfig) -> str:
    if kind_of_model(config.model).has_rate:
        return f"{config.clip_samples} samples at {config.sample_rate} Hz"
    return f"{config.image_size}px"


def _setting_spec(config: BenchConfig) -> str:
    if config.augment is not None:
        return config.augment
    return (kind_of_model(config.model).settings or SETTINGS)[config.setting]


def format_bench(result: BenchResult) -> str:
    """A plain-text table of ``result``: medians in ms, the step's range and IQR, ratio, floor, efficiency."""
    config = result.config
    width = width_of(config)
    lines = [
        f"lossaug bench: {config.model} width {width}, batch {config.batch_size}, {_input_size(config)}, "
        f"setting {config.setting} ({_setting_spec(config)})",
        f"{result.device}, torch {result.torch_version}, commit {(result.git_commit or 'unknown')[:10]}, "
        f"medians of {config.repeats} interleaved repeats after {config.warmup} warm-up",
        f"train step {result.train_step.median:.1f} ms (IQR {result.train_step.iqr:.1f}), "
        f"score forward {result.score_forward.median:.1f} ms (IQR {result.score_forward.iqr:.1f}), "
        f"c = {result.c:.3f}",
        "",
    ]
    header = ("M", "step ms", "[min, max]", "IQR", "augment", "select", "train", "R(M)", "floor", "effic.", "img/s")
    rows = [header]
    for t in result.steps:
        rows.append(
            (
                str(t.num_candidates),
                f"{t.step.median:.1f}",
                f"[{t.step.min:.1f}, {t.step.max:.1f}]",
                f"{t.step.iqr:.1f}",
                f"{t.augment.median:.1f}",
                f"{t.select.median:.1f}",
                f"{t.train.median:.1f}",
                f"{t.ratio:.2f}",
                f"{t.floor:.2f}",
                f"{t.efficiency:.2f}",
                f"{t.images_per_second:.0f}",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines += ["  ".join(cell.rjust(w) for cell, w in zip(row, widths, strict=True)) for row in rows]
    lines += ["", result.comparison, "", "cheaper selection, step cost relative to the baseline step:"]
    for row in result.options():
        how = "measured" if row["measured"] else "derived"
        extra = f", expected {row['expected']:.2f}x" if "expected" in row else ""
        extra += f", {row['ratio_per_image']:.2f}x per image" if "ratio_per_image" in row else ""
        lines.append(f"  M={row['M']}  {row['option']:<22} {row['ratio']:.2f}x  ({how}{extra})")
    return "\n".join(lines)
