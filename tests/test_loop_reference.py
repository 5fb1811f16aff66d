"""Today's training loop reproduces the loop as it stood before it was restructured (tests/reference/).

On the kind of CPU the reference was made on (same ISA flags, torch and thread count) the final weights must be
bit-identical; elsewhere float kernels may sum in another order, so they must agree to float noise, which still
catches a change of random stream, step order, method or schedule (those move weights over 3x more than kernel
noise does; the proxy case alone is then too close to tell and only the same-CPU check guards it).
"""

import importlib.util
from pathlib import Path

import pytest
import torch

HERE = Path(__file__).parent / "reference"
spec = importlib.util.spec_from_file_location("make_loop_reference", HERE / "make_loop_reference.py")
reference_module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(reference_module)
REFERENCE = torch.load(HERE / "loop_reference.pt", weights_only=True)
SAME_CPU = REFERENCE["cpu"] == reference_module.cpu_fingerprint()


@pytest.mark.parametrize("name", sorted(reference_module.CASES))
def test_loop_matches_reference(name):
    expected = REFERENCE["cases"][name]
    got = reference_module.run_case(name)
    assert got["state"].keys() == expected["state"].keys()
    for key, value in expected["state"].items():
        if SAME_CPU:
            assert torch.equal(got["state"][key], value), f"{name}: {key} differs from the reference"
        else:
            # Measured here: 1 thread instead of 2 moves weights by up to 3.2e-3; a change of method or option
            # (baseline vs proposed, select-every, select-from, maxup) by 5e-2 or more.
            torch.testing.assert_close(got["state"][key], value, rtol=0, atol=1.5e-2, msg=f"{name}: {key}")
    if SAME_CPU:
        assert got["train_loss"] == expected["train_loss"]
