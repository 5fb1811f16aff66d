"""experiments/weighted_control.py: the uniform-weight control is the weighted run's own config with temperature
inf, written elsewhere; nothing else changes."""

import dataclasses
import importlib.util
import json
import math
import sys
from pathlib import Path

from lossaug.run.config import TrainConfig

ROOT = Path(__file__).resolve().parents[1]


def load_script():
    spec = importlib.util.spec_from_file_location("weighted_control", ROOT / "experiments" / "weighted_control.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_the_control_is_the_weighted_run_with_uniform_weights(tmp_path):
    control = load_script()
    weighted = TrainConfig(dataset="mini", method="weighted", epochs=19, num_candidates=4, batch_size=32, seed=3,
                           branch_from="cmp/C/trunk/seed-3", out="cmp/C/weighted/seed-3")  # fmt: skip
    run = tmp_path / "weighted" / "seed-3"
    run.mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({"config": dataclasses.asdict(weighted), "git_commit": "abc"}))
    (run / "final.json").write_text(json.dumps({"test_error": 0.3}))
    config = control_config = control.control_config(run, tmp_path / "weighted-uniform" / "seed-3")
    assert config == dataclasses.replace(
        weighted, temperature=math.inf, out=str(tmp_path / "weighted-uniform" / "seed-3")
    )
    assert control_config.resolved_temperature() == math.inf  # loss ** (1 / inf) = 1: every candidate weighs 1/M
    assert control.errors(tmp_path / "weighted") == {3: 30.0}
