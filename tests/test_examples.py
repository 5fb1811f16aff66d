"""Each example in examples/ runs to completion on tiny settings and reports progress (they are documentation,
so they must keep working)."""

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

# script, tiny arguments, the module it needs beyond lossaug's own dependencies, text its output must contain
CASES = [
    ("plain_pytorch.py", ["--steps", "3", "--batch-size", "16"], None, "step 3:"),
    ("kornia_pipeline.py", ["--steps", "3", "--batch-size", "16"], "kornia", "step 3:"),
    ("regression.py", ["--steps", "3"], None, "step 3:"),
    ("multiview_dataloader.py", ["--steps", "3", "--batch-size", "16", "--workers", "2"], None, "step 3:"),
    ("lightning_example.py", ["--steps", "3", "--batch-size", "16"], "lightning", "trained 3 steps"),
    ("transfer.py", ["--epochs", "2", "--seeds", "0", "--width", "2", "--cost-ratio", "2"], None, "fine-tuned from"),
]


@pytest.mark.slow  # subprocess: each example script, 3-6 s
@pytest.mark.parametrize("script, arguments, needs, expected", CASES, ids=[case[0] for case in CASES])
def test_example_runs(script, arguments, needs, expected, tmp_path):
    if needs is not None and importlib.util.find_spec(needs) is None:
        pytest.skip(f"{script} needs {needs}")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / script), *arguments],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        cwd=tmp_path,  # what an example writes (runs/...) stays out of the checkout
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert expected in done.stdout, done.stdout[-2000:]
