"""The method registry (methods.py): every row says what a TrainConfig of that method does, and the compare arms
and the selection object agree with it."""

import math

import pytest
import torch

from lossaug.compare.arms import ARM_REGISTRY, BASELINE_STEP, PROPOSED_STEP, WEIGHTED_STEP
from lossaug.errors import InputError
from lossaug.methods import METHOD_REGISTRY, method_named
from lossaug.run.config import METHODS, TrainConfig, validate_config
from lossaug.run.method import method_for
from lossaug.selection import MODES

# Today's behaviour, written out: (candidates at M=4, default temperature, images per step at batch 32, mode,
# step kind, --score-fraction applies)
EXPECTED = {
    "baseline": (1, math.inf, 32, "sample", "baseline", False),
    "proposed": (4, 1.0, 32, "sample", "proposed", True),
    "maxup": (4, 0.0, 32, "sample", "proposed", True),
    "weighted": (4, 1.0, 8, "weighted", "weighted", False),
}


def test_the_choices_are_the_registry_in_order():
    assert METHODS == tuple(METHOD_REGISTRY) == tuple(EXPECTED)
    assert all(name == row.name for name, row in METHOD_REGISTRY.items())


@pytest.mark.parametrize("name", list(EXPECTED))
def test_each_row_is_what_its_config_does(name):
    config = TrainConfig(method=name, num_candidates=4, batch_size=32)
    row = method_named(name)
    candidates, temperature, images, mode, step, gates = EXPECTED[name]
    assert config.candidates_per_image() == row.candidates(4) == candidates
    assert config.resolved_temperature() == row.resolved_temperature(None) == temperature
    assert config.images_per_step() == row.images_per_step(32, 4) == images
    assert row.mode == mode and mode in MODES and row.trains_all == (mode == "weighted")
    assert row.step == step and row.gates == gates
    assert row.memory_candidates(4) == (1 if row.trains_all else candidates)


@pytest.mark.parametrize("name", list(EXPECTED))
def test_a_given_temperature_applies_where_the_method_selects(name):
    config = TrainConfig(method=name, temperature=0.5)
    assert config.resolved_temperature() == (0.5 if method_named(name).selects else math.inf)


@pytest.mark.parametrize("name", list(EXPECTED))
def test_score_fraction_is_refused_where_gating_does_not_apply(name):
    config = TrainConfig(method=name, score_fraction=0.5, epochs=1)
    if method_named(name).gates:
        validate_config(config)
    else:
        with pytest.raises(InputError, match=f"score_fraction applies to the proposed and maxup methods, not '{name}'"):
            validate_config(config)


@pytest.mark.parametrize("name", list(EXPECTED))
def test_the_selection_object_takes_the_rows_mode_and_temperature(name):
    config = TrainConfig(method=name)
    method = method_for(config, (0.5, 0.5, 0.5), torch.device("cpu"), image_side=8)
    row = method_named(name)
    assert method.mode == row.mode
    assert method.num_candidates == row.candidates(config.num_candidates)
    assert method.temperature == row.resolved_temperature(None)


def test_arms_priced_by_their_method_step_agree_with_the_method():
    """An arm without its own step kind (gated-Q, proposed-mM) is priced at its method's step kind."""
    for arm in ARM_REGISTRY.values():
        own_kind = {"score_fraction", "num_candidates"} & dict(arm.options).keys()
        if not own_kind:
            assert arm.step == method_named(arm.method).step, arm.name
        assert arm.selects == method_named(arm.method).selects
    assert (BASELINE_STEP, PROPOSED_STEP, WEIGHTED_STEP) == ("baseline", "proposed", "weighted")


def test_an_unknown_method_is_refused_naming_it_and_the_choices():
    with pytest.raises(InputError, match=r"unknown method 'sampled'; choose from \['baseline', 'proposed'"):
        method_named("sampled")
    with pytest.raises(InputError, match=r"unknown method 'sampled'; choose from"):
        validate_config(TrainConfig(method="sampled"))
