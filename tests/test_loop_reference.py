"""Today's training loop reproduces the loop as it stood before it was restructured (tests/reference/).

On the kind of CPU the reference was made on (same ISA flags, torch and thread count) the final weights must be
bit-identical; elsewhere float kernels may sum in another order, so they must agree to float noise, which still
catches any change of random stream, step order or schedule (those move weights by orders of magnitude more).
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
            torch.testing.assert_close(got["state"][key], value, rtol=1e-3, atol=1e-4, msg=f"{name}: {key}")
    if SAME_CPU:
        assert got["train_loss"] == expected["train_loss"]
