"""Tests of the step-cost benchmark on one tiny CPU run (about a second) and of its config checks."""

import json
import math

import pytest
import torch

from lossaug.bench import QUICK, BenchConfig, BenchResult, format_bench, resolve_config, run_bench

TINY = dict(
    model="cnn", width=4, batch_size=8, image_size=16, candidate_counts=(1, 2), repeats=2, warmup=1, device="cpu"
)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    # On the shared 2-core machine, torch's 2 threads made the tiny run take 7 s instead of 1 s while another job
    # was busy: every parallel region waits for a descheduled thread.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def tiny() -> BenchResult:
    return run_bench(BenchConfig(**TINY))


def test_json_has_every_key_and_is_serialisable(tiny):
    payload = json.loads(json.dumps(tiny.to_json()))
    assert {
        "config",
        "device",
        "torch_version",
        "lossaug_version",
        "git_commit",
        "timestamp",
        "seconds",
        "train_step_ms",
        "score_forward_ms",
        "c",
        "per_candidates",
        "published_ratio",
        "comparison",
    } <= payload.keys()
    assert payload["config"]["candidates"] == [1, 2] and payload["config"]["model"] == "cnn"
    assert payload["torch_version"] == torch.__version__ and payload["published_ratio"] == 1.8
    assert payload["device"].startswith("cpu")
    spread_keys = {"median", "min", "q1", "q3", "max", "iqr", "samples"}
    assert spread_keys <= payload["train_step_ms"].keys() and spread_keys <= payload["score_forward_ms"].keys()
    assert len(payload["train_step_ms"]["samples"]) == TINY["repeats"]
    assert [row["candidates"] for row in payload["per_candidates"]] == [1, 2]
    for row in payload["per_candidates"]:
        for part in ("step_ms", "augment_ms", "select_ms", "train_ms"):
            assert spread_keys <= row[part].keys() and len(row[part]["samples"]) == TINY["repeats"]
        assert {"ratio", "floor", "efficiency", "images_per_second"} <= row.keys()


def test_ratios_floors_and_efficiency_follow_their_definitions(tiny):
    assert tiny.c == pytest.approx(tiny.score_forward.median / tiny.train_step.median) and tiny.c > 0
    base, two = tiny.steps
    assert base.num_candidates == 1 and base.ratio == 1.0 and base.floor == 1.0
    assert two.ratio == pytest.approx(two.step.median / base.step.median) and two.ratio > 0
    assert two.floor == pytest.approx(1 + 2 * tiny.c)
    for t in tiny.steps:
        assert t.efficiency == pytest.approx(t.floor / t.ratio)
        assert t.images_per_second == pytest.approx(TINY["batch_size"] / t.step.median * 1e3)
        # The step is timed as its three parts, so each repeat's step is their sum.
        for i, total in enumerate(t.step.samples):
            assert total == pytest.approx(t.augment.samples[i] + t.select.samples[i] + t.train.samples[i])
        assert t.step.min <= t.step.q1 <= t.step.median <= t.step.q3 <= t.step.max
        assert all(math.isfinite(v) and v > 0 for v in t.step.samples)


def test_format_mentions_every_m_and_the_comparison(tiny):
    text = format_bench(tiny)
    rows = {line.split()[0] for line in text.splitlines() if line.strip()}
    assert {"1", "2"} <= rows
    assert "R(4) not measured" in text and tiny.comparison in text


def test_comparison_states_r4_against_the_published_ratio():
    result = run_bench(BenchConfig(**{**TINY, "candidate_counts": (1, 4), "repeats": 1, "warmup": 0}))
    assert result.comparison.startswith(f"R(4)={result.timing(4).ratio:.2f}x vs published 1.8x")


def test_global_random_state_is_untouched():
    before = torch.get_rng_state()
    run_bench(BenchConfig(**{**TINY, "candidate_counts": (1,), "repeats": 1, "warmup": 0}))
    assert torch.equal(torch.get_rng_state(), before)


def test_quick_fills_only_fields_left_at_their_defaults():
    assert resolve_config(BenchConfig(quick=True)) == BenchConfig(quick=True, **QUICK)
    kept = resolve_config(BenchConfig(quick=True, model="preact_resnet18", width=8, repeats=7))
    assert (kept.model, kept.width, kept.repeats, kept.warmup) == ("preact_resnet18", 8, 7, QUICK["warmup"])
    assert resolve_config(BenchConfig(repeats=7)) == BenchConfig(repeats=7)


@pytest.mark.parametrize(
    "changes, named",
    [
        (dict(candidate_counts=(0, 1, 2)), "0"),
        (dict(candidate_counts=(2, 4)), r"\(2, 4\)"),
        (dict(candidate_counts=(1, 2, 2)), r"\(1, 2, 2\)"),
        (dict(model="resnet50"), "resnet50"),
        (dict(repeats=0), "repeats must be >= 1, got 0"),
        (dict(warmup=-1), "-1"),
        (dict(setting="D"), "'D'"),
        (dict(device="tpu"), "tpu"),
        (dict(score_chunk=0), "score_chunk"),
    ],
)
def test_bad_config_names_the_value(changes, named):
    with pytest.raises(ValueError, match=named):
        BenchConfig(**changes)


def test_proxy_and_derived_option_costs():
    from lossaug.bench import BenchConfig, run_bench

    tiny = dict(
        model="cnn", width=4, batch_size=8, image_size=16, candidate_counts=(1, 2), repeats=2, warmup=1, device="cpu"
    )
    config = BenchConfig(**tiny, proxy_model="cnn", proxy_width=2, select_every=(2,), select_from=(0.5,))
    result = run_bench(config)
    options = {row["option"]: row for row in result.options()}
    r2 = result.timing(2).ratio
    assert options["exact"]["ratio"] == r2 and options["proxy cnn"]["measured"]
    assert options["proxy cnn"]["ratio"] > 0
    assert abs(options["select_every 2"]["ratio"] - (r2 + 1) / 2) < 1e-12
    assert abs(options["select_from 0.5"]["ratio"] - (0.5 + 0.5 * r2)) < 1e-12
    assert "2" in result.to_json()["proxy_step_ms"]


def test_audio_model_is_timed_on_waveforms_with_the_audio_setting(monkeypatch):
    from lossaug.bench import timing as bench_module

    seen = []
    real = bench_module.method_for
    monkeypatch.setattr(bench_module, "method_for", lambda *a, **k: seen.append(k) or real(*a, **k))
    config = BenchConfig(model="audio_cnn", width=2, batch_size=4, clip_samples=800, candidate_counts=(1, 2),
                         repeats=1, warmup=0, device="cpu", setting="B")  # fmt: skip
    result = run_bench(config)
    assert seen == [{"audio_rate": 8000, "num_classes": 10}] and result.timing(2).ratio > 0
    text = format_bench(result)
    assert "800 samples at 8000 Hz" in text and "timemask" in text


def test_audio_bench_builds_model_and_freqmask_for_its_rate(monkeypatch):
    from lossaug.bench import timing as bench_module

    built, methods = [], []
    real, real_method = bench_module.build_classifier, bench_module.method_for
    monkeypatch.setattr(
        bench_module, "build_classifier", lambda *a, **k: built.append(k["sample_rate"]) or real(*a, **k)
    )
    monkeypatch.setattr(bench_module, "method_for", lambda *a, **k: methods.append(real_method(*a, **k)) or methods[-1])
    config = BenchConfig(model="audio_cnn", width=2, batch_size=4, clip_samples=1600, sample_rate=16000,
                         candidate_counts=(1, 2), repeats=1, warmup=0, device="cpu", setting="B")  # fmt: skip
    result = run_bench(config)
    assert built == [16000] and "1600 samples at 16000 Hz" in format_bench(result)
    from lossaug.augment.audio import FreqMask

    assert [op.sample_rate for op in methods[0].augment.augments if isinstance(op, FreqMask)] == [16000]


def test_compare_benches_an_audio_model_at_its_clip_length():
    from lossaug.compare import _bench_input_size
    from lossaug.run.config import TrainConfig

    given = TrainConfig(model="audio_cnn", clip_seconds=0.68, sample_rate=16000)
    assert _bench_input_size(given) == {"clip_samples": 10880, "sample_rate": 16000}
    assert _bench_input_size(TrainConfig(model="cnn", image_size=64)) == {"image_size": 64}
    assert _bench_input_size(TrainConfig(model="cnn")) == {}


def test_compare_benches_an_audio_model_at_its_datas_rate_and_length(tmp_path):
    """Without --sample-rate, the clips bench times are the data's own: 16 kHz, not 8 kHz (0.08-0.12 s clips)."""
    from test_use import wav_tree

    from lossaug.compare import _bench_input_size
    from lossaug.run.config import TrainConfig

    root = wav_tree(tmp_path / "words16k")
    size = _bench_input_size(TrainConfig(dataset="audio-folder", data=str(root), model="audio_cnn"))
    assert size["sample_rate"] == 16000 and 0.08 * 16000 <= size["clip_samples"] <= 0.12 * 16000
    half = TrainConfig(dataset="audio-folder", data=str(root), model="audio_cnn", clip_seconds=0.05)
    assert _bench_input_size(half) == {"clip_samples": 800, "sample_rate": 16000}
    resampled = TrainConfig(dataset="audio-folder", data=str(root), model="audio_cnn", sample_rate=8000)
    assert _bench_input_size(resampled)["sample_rate"] == 8000
