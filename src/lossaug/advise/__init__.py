"""``lossaug advise``: "use selection, or train the baseline longer?" answered on the user's own data in one
command, within a time budget, with anytime-valid confidence sequences (``compare.stats.confidence_sequence``).

It runs ``lossaug compare``'s own plan and runner one seed at a time (every arm branched from one trunk per seed,
the baseline at budgets that bracket every arm's compute) and stops when every arm is resolved, the time is spent,
the seed cap is reached or the user interrupts; the same command continues where it stopped.

``plan`` (``AdviseConfig``, durations, budgets, seed cost), ``verdicts`` (per-arm sequences, the recommendation),
``report`` (commands, ``advice.json`` / ``advice.md``), ``run`` (the loop), ``cli`` (the subcommand).
"""

from lossaug.advise.plan import DEFAULT_ARMS, AdviseConfig, bracketing_budgets, parse_duration, validate_advise
from lossaug.advise.run import Advice, run_advise
from lossaug.advise.verdicts import ArmVerdict, Recommendation, recommend

__all__ = [
    "DEFAULT_ARMS",
    "Advice",
    "AdviseConfig",
    "ArmVerdict",
    "Recommendation",
    "bracketing_budgets",
    "parse_duration",
    "recommend",
    "run_advise",
    "validate_advise",
]
