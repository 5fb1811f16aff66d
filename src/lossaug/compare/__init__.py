"""``lossaug compare``: arms x settings x seeds, run one after another into one directory, then summarised with
the paired differences that answer "does selection help, and does it pay for its time?".

Arms (``arms.ARM_REGISTRY``): ``baseline``, ``proposed``, ``maxup``, ``gated`` (proposed with stale-loss gating
at Q = 0.25; ``gated-Q`` for another Q), ``proposed-mM`` (proposed at M candidates: an M sweep's points, each
priced by its own benched R), ``weighted`` (all M candidates weighted by loss, given the baseline's
compute), ``weighted-equal-time`` (the same, given the proposed arm's compute;
``weighted-uniform-equal-time`` with uniform weights, temperature inf), ``baseline-equal-time`` (the baseline
given the proposed arm's compute) and, with ``budgets``, ``baseline-xB`` (the baseline's tail after the branch
stretched B times). Compute comes from the cost ratio R of each step kind (one of its epochs in baseline epochs),
declared or measured once by ``lossaug bench`` at the start, so that how busy the machine was during one
seed cannot size it. Every arm gets the same data, model, optimiser and seed; only the method (and its epochs)
differs.

With ``branch_at`` F > 0 each (setting, seed) first trains a trunk, the baseline up to fraction F of its steps, and
every arm continues from the trunk's checkpoint with its own method: nothing differs before F, which removes most
of the seed-to-seed noise from the paired differences. Finished runs (``final.json``; ``trunk.json`` for a trunk)
are read back, not rerun; interrupted ones resume from their checkpoint.

The summary gives per setting the endpoints (proposed - baseline, proposed - baseline-equal-time, each other
selection arm against the arms it is compared to): mean paired difference of test error with its 95% t-interval,
paired sd, n, a verdict against the margin δ, the minimal effect detectable with 80% power and the seeds that would
resolve ±0.3 points; per arm n, mean and sd of test and train error, epochs, declared cost and measured time ratio;
and with budgets the frontier (``frontier``: equal compute, best reachable, break-even; ``frontier.png``). Errors
are fractions in ``summary.json`` and percentage points in ``summary.md`` and the plots.

The package: ``config`` (``CompareConfig``, protocol files), ``arms`` (the arm registry), ``plan`` (the runs),
``costs`` (the cost ratios, declared or benched), ``runner``, ``analyses`` (the ``Analysis`` shape, paired
endpoints), ``frontier`` (its table, verdicts and plot), ``report`` (summary, Markdown, forest plot) and
``stats`` (t quantiles, verdicts, power). Every public name is importable from ``lossaug.compare``.
"""

from lossaug.compare.analyses import Analysis, Finished, PairedEndpoints, endpoint
from lossaug.compare.arms import (
    ARM_REGISTRY,
    ARMS,
    ENDPOINTS,
    Arm,
    arm_named,
    budget_arm,
    candidates_arm,
    equal_compute_epochs,
    sweep_candidates,
)
from lossaug.compare.config import (
    PER_RUN,
    PROTOCOL_KEYS,
    CompareConfig,
    all_arms,
    check_arm_epochs,
    check_budget_range,
    config_from_protocol,
    validate_compare,
)
from lossaug.compare.costs import (
    COST_RATIO_FILE,
    measure_cost_ratios,
    needed_kinds,
    resolve_costs,
)
from lossaug.compare.costs import _bench_input_size as _bench_input_size  # tests/test_bench.py imports it here
from lossaug.compare.frontier import (
    FRONTIER_ANALYSES,
    BestReachable,
    BreakEven,
    EqualCompute,
    Frontier,
    break_even_ratio,
    budget_label,
    interpolate_log,
    write_frontier,
)
from lossaug.compare.plan import (
    RunSpec,
    plan,
    planned_arms,
    run_dir,
    trunk_config,
    trunk_dir,
)
from lossaug.compare.report import (
    ANALYSES,
    arm_rows,
    check_commits,
    forest_rows,
    mean_interval,
    summarize,
    summary_costs,
    summary_markdown,
    write_forest,
)
from lossaug.compare.runner import read_result, run_compare

__all__ = [
    "ANALYSES",
    "ARMS",
    "ARM_REGISTRY",
    "COST_RATIO_FILE",
    "ENDPOINTS",
    "FRONTIER_ANALYSES",
    "PER_RUN",
    "PROTOCOL_KEYS",
    "Analysis",
    "Arm",
    "BestReachable",
    "BreakEven",
    "CompareConfig",
    "EqualCompute",
    "Finished",
    "Frontier",
    "PairedEndpoints",
    "RunSpec",
    "all_arms",
    "arm_named",
    "arm_rows",
    "break_even_ratio",
    "budget_arm",
    "budget_label",
    "candidates_arm",
    "check_arm_epochs",
    "check_budget_range",
    "check_commits",
    "config_from_protocol",
    "endpoint",
    "equal_compute_epochs",
    "forest_rows",
    "interpolate_log",
    "mean_interval",
    "measure_cost_ratios",
    "needed_kinds",
    "plan",
    "planned_arms",
    "read_result",
    "resolve_costs",
    "run_compare",
    "run_dir",
    "summarize",
    "summary_costs",
    "sweep_candidates",
    "summary_markdown",
    "trunk_config",
    "trunk_dir",
    "validate_compare",
    "write_forest",
    "write_frontier",
]
