"""experiments/gpu_check.sh and its helper gpu_check.py: SKIP lines and JSON without CUDA, commands the CLI
accepts, and (slow) a CPU rehearsal of the resume check, the one with the most moving parts."""

import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from lossaug.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "experiments" / "gpu_check.sh"
LINE = re.compile(r"^(PASS|FAIL|SKIP)\s+(\S+)")


def load_helper():
    spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "experiments" / "gpu_check.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the file executes
    spec.loader.exec_module(module)
    return module


gpu_check = load_helper()


def check_lines(stdout: str) -> dict[str, str]:
    return {m.group(2): m.group(1) for m in map(LINE.match, stdout.splitlines()) if m}


@pytest.mark.slow  # subprocess: experiments/gpu_check.sh
@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA behaviour")
def test_script_without_cuda_prints_skip_lines_and_writes_json(tmp_path):
    env = {**os.environ, "PYTHON": sys.executable, "OMP_NUM_THREADS": "1"}
    env.pop("OUT", None)
    result = subprocess.run(
        ["bash", str(SCRIPT), str(tmp_path / "no-such-archive.tar.xz"), str(tmp_path / "results")],
        capture_output=True, text=True, env=env, timeout=120, cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    lines = check_lines(result.stdout)
    assert set(lines) == {"environment", *gpu_check.CHECKS}
    assert lines.pop("environment") == "PASS"
    assert set(lines.values()) == {"SKIP"}
    record = json.loads((tmp_path / "results" / "gpu_check.json").read_text())
    assert [c["name"] for c in record["checks"]] == ["environment", *gpu_check.CHECKS]
    env_info = record["environment"]
    assert env_info["cuda_available"] is False and env_info["torch_version"] == torch.__version__
    assert {"nccl_available", "triton_version", "git_commit"} <= set(env_info)


def test_script_usage_and_syntax():
    assert subprocess.run(["bash", "-n", str(SCRIPT)]).returncode == 0
    usage = subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True)
    assert usage.returncode == 2 and "ARCHIVE" in usage.stdout


@pytest.mark.parametrize("scale", ["cuda", "rehearsal"])
def test_train_and_bench_options_are_ones_the_cli_accepts(scale):
    sizes = gpu_check.cuda_scale("a.tar.xz", "cache") if scale == "cuda" else gpu_check.rehearsal_scale("cache")
    parser = build_parser()
    for model in ("fast_resnet", "preact_resnet18"):
        for method in ("baseline", "proposed"):
            options = gpu_check.train_options(sizes, model=model, epochs=2, train_size=None, method=method)
            args = parser.parse_args(["train", *options, "--data-placement", "host", "--compile-scoring", "on"])
            assert args.model == model
    parser.parse_args(["bench", *sizes.bench, "--device", sizes.device, "--proxy-model", "cnn", "--out", "b.json"])
    from lossaug.train import TrainConfig

    TrainConfig(**gpu_check.train_config(sizes, out="run"))  # the train-api and ddp-worker helpers' fields


def test_ddp_outcome_passes_only_equal_checksums_of_the_whole_world():
    ok = gpu_check.Run(["x"], 0, 1.0, "", "")
    failed = gpu_check.Run(["x"], 1, 1.0, "", "Traceback\nRuntimeError: Duplicate GPU detected\n")
    summary = {"world_size": 2, "rank_parameter_checksums": [1.5, 1.5]}
    assert gpu_check.ddp_outcome(ok, summary, 2).status == "PASS"
    uneven = {"world_size": 2, "rank_parameter_checksums": [1.5, 1.25]}
    assert gpu_check.ddp_outcome(ok, uneven, 2).status == "FAIL"
    outcome = gpu_check.ddp_outcome(failed, {}, 2)
    assert outcome.status == "FAIL" and "Duplicate GPU" in outcome.note
    # A world of one must show one checksum: a run outside a process group (no checksums) fails the check.
    alone = {"world_size": 1, "rank_parameter_checksums": [1.5]}
    assert gpu_check.ddp_outcome(ok, alone, 1).status == "PASS"
    assert gpu_check.ddp_outcome(ok, {"world_size": 1}, 1).status == "FAIL"
    assert gpu_check.ddp_outcome(ok, summary, 1).status == "FAIL"


def test_nccl_with_more_ranks_than_gpus_is_skipped_without_running():
    ctx = gpu_check.Context(gpu_check.cuda_scale("a.tar.xz", "c"), Path("unused"), {}, deadline=1e18, gpus=1)
    outcome = gpu_check.CHECKS["ddp_world2_nccl"](ctx)
    assert outcome.status == "SKIP" and "ddp_world1_nccl" in outcome.note and not ctx.runs


@pytest.mark.slow  # subprocess, waits out a 1 s timeout
def test_a_hanging_command_is_killed_at_its_timeout(tmp_path):
    ctx = gpu_check.Context(gpu_check.rehearsal_scale("c"), tmp_path, dict(os.environ), deadline=1e18)
    run = ctx.run([sys.executable, "-c", "import time; time.sleep(60)"], timeout=1)
    assert run.returncode is None and run.seconds < 30 and "timed out" in run.why()


@pytest.mark.slow
def test_cpu_rehearsal_of_the_resume_check_passes(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, str(ROOT / "experiments" / "gpu_check.py"), "--rehearse", "--only", "resume_after_sigterm",
         "--results", str(tmp_path / "results"), "--cache-dir", str(tmp_path / "cache")],
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    assert check_lines(result.stdout) == {"environment": "PASS", "resume_after_sigterm": "PASS"}, result.stdout
    record = json.loads((tmp_path / "results" / "gpu_check.json").read_text())
    resume = record["checks"][1]["figures"]
    assert resume["weights_equal"] and resume["epochs"] == 2
    assert not list((tmp_path / "results").rglob("checkpoint*.pt"))  # deleted once compared


SESSION = ROOT / "experiments" / "gpu_session.sh"


def test_session_script_usage_and_a_missing_archive():
    assert subprocess.run(["bash", "-n", str(SESSION)]).returncode == 0
    usage = subprocess.run(["bash", str(SESSION)], capture_output=True, text=True)
    assert usage.returncode == 2 and "CHECK_BUDGET" in usage.stdout
    missing = subprocess.run(["bash", str(SESSION), "no/such.tar.xz"], capture_output=True, text=True)
    assert missing.returncode == 2 and missing.stderr.strip().splitlines() == [
        "gpu_session: data archive no/such.tar.xz not found (copy it into the checkout's data/ folder first)"
    ]


@pytest.mark.slow  # subprocesses: gpu_check.sh and gpu_protocol.py
@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA behaviour")
def test_session_without_cuda_skips_the_checks_and_refuses_the_protocol(tmp_path):
    archive = tmp_path / "cifar10-jpeg.tar.xz"
    archive.write_bytes(b"")  # never opened without CUDA
    env = {**os.environ, "PYTHON": sys.executable, "OMP_NUM_THREADS": "1", "OUT": str(tmp_path / "out")}
    result = subprocess.run(["bash", str(SESSION), str(archive), "60", "30"], capture_output=True, text=True,
                            env=env, timeout=120)  # fmt: skip
    lines = check_lines(result.stdout)
    assert lines.pop("environment") == "PASS" and set(lines.values()) == {"SKIP"}
    assert "torch.cuda.is_available() is False; --tiny runs the CPU smoke test" in result.stdout
    assert "gpu_check exit 0, gpu_protocol exit 2" in result.stdout and result.returncode == 2
    assert (tmp_path / "out" / "check" / "gpu_check.json").is_file() and (tmp_path / "out" / "check.log").is_file()
