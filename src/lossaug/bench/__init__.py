"""``lossaug bench``: what one training step costs with M candidates, and with the cheap selection modes.

``run_bench(BenchConfig) -> BenchResult`` (``timing``) times the loop's own step; ``config`` holds what is timed,
``results`` what was measured, ``report`` the printed table. Every public name is re-exported here.
"""

from lossaug.bench.config import (
    PUBLISHED_CANDIDATES,
    PUBLISHED_RATIO,
    QUICK,
    SETTINGS,
    BenchConfig,
    cheap_candidates,
    resolve_config,
    width_of,
)
from lossaug.bench.report import format_bench
from lossaug.bench.results import BenchResult, CandidateTiming, Spread
from lossaug.bench.timing import run_bench

__all__ = [
    "PUBLISHED_CANDIDATES",
    "PUBLISHED_RATIO",
    "QUICK",
    "SETTINGS",
    "BenchConfig",
    "BenchResult",
    "CandidateTiming",
    "Spread",
    "cheap_candidates",
    "format_bench",
    "resolve_config",
    "run_bench",
    "width_of",
]
