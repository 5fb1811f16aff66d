"""experiments/gpu_check.sh, its helper gpu_check.py and gpu_session.sh: SKIP lines and JSON without CUDA, commands
the CLI accepts, checks that fit their budget, a budget's end as a SKIP, (slow) a CPU rehearsal of the resume check,
the one with the most moving parts, and of the whole session, whose $OUT must come back whole from the device tool
(at most 8 files of 16 MiB, two folders deep, names [A-Za-z0-9._-], no checkpoint), killed or not. Also the library
parts the GPU machine relies on: cuDNN as training sets it, the commit without .git, plots without matplotlib."""

import importlib.util
import json
import os
import re
import signal
import subprocess
import sys
import tarfile
import time
import warnings
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
    bench = parser.parse_args(["bench", *sizes.bench, "--device", sizes.device, "--out", "b.json"])
    assert bench.proxy_model == "cnn" and bench.repeats <= 10  # one bench, the proxy's crash path included
    from lossaug.run.train import TrainConfig

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
    outcome = gpu_check.CHECKS["ddp_world2_nccl"].run(ctx)
    assert outcome.status == "SKIP" and "ddp_world1_nccl" in outcome.note and not ctx.runs


def test_checks_fit_their_budget_by_construction_in_the_issues_order():
    estimated = gpu_check.ENVIRONMENT_SECONDS + sum(check.seconds for check in gpu_check.CHECKS.values())
    assert estimated <= 0.95 * gpu_check.BUDGET, estimated
    assert list(gpu_check.CHECKS)[:6] == ["data", "resume_after_sigterm", "bench", "compile_scoring",
                                          "ddp_world1_nccl", "torchrun_cli_2proc"]  # fmt: skip
    assert "ddp_world2_gloo" not in gpu_check.CHECKS  # the torchrun check is the same world over gloo
    assert gpu_check.main(["--only", "bench,no_such_check"]) == 2


@pytest.mark.slow  # subprocesses, each waits out a 1 s limit
def test_a_hanging_command_fails_at_its_timeout_but_is_a_skip_at_the_deadline(tmp_path):
    sleeper = [sys.executable, "-c", "import time; time.sleep(60)"]
    ctx = gpu_check.Context(gpu_check.rehearsal_scale("c"), tmp_path, dict(os.environ), deadline=1e18)
    run = ctx.run(sleeper, timeout=1)
    assert run.returncode is None and run.seconds < 30 and "timed out" in run.why() and not run.deadline
    failed = gpu_check.Outcome("FAIL", note=run.why())
    assert gpu_check.deadline_is_skip(failed, ctx.runs).status == "FAIL"  # a hang is a failure
    ctx = gpu_check.Context(gpu_check.rehearsal_scale("c"), tmp_path, dict(os.environ), deadline=time.monotonic())
    run = ctx.run(sleeper, timeout=60)
    assert run.returncode is None and run.deadline and "deadline" in run.why()
    skipped = gpu_check.deadline_is_skip(gpu_check.Outcome("FAIL", note=run.why()), ctx.runs)
    assert skipped.status == "SKIP" and skipped.note.startswith("deadline: ")


def test_bf16_check_fails_on_diverging_probabilities_picks_or_extra_fallback_rows():
    good = {"rows": 1000, "tv_mean": 0.001, "same_pick": 0.99, "fallback_rows": {"fp32": 3, "bf16": 5}}
    assert gpu_check.bf16_problems(good) == []
    assert "total variation" in gpu_check.bf16_problems({**good, "tv_mean": 0.05})[0]
    assert "same candidate" in gpu_check.bf16_problems({**good, "same_pick": 0.9})[0]
    assert "fallback rows" in gpu_check.bf16_problems({**good, "fallback_rows": {"fp32": 0, "bf16": 11}})[0]


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
    assert usage.returncode == 2 and "CHECK_BUDGET" in usage.stdout and "results.tar.gz" in usage.stdout
    missing = subprocess.run(["bash", str(SESSION), "no/such.tar.xz"], capture_output=True, text=True)
    assert missing.returncode == 2 and missing.stderr.strip().splitlines() == [
        "gpu_session: data archive no/such.tar.xz not found (copy it into the checkout's data/ folder first)"
    ]
    for args, env, message in (
        (["--rehearse", "0"], {}, "budgets are whole seconds > 0, got '0'"),
        (["--rehearse", "10", "1.5"], {}, "budgets are whole seconds > 0, got '1.5'"),
        (["--rehearse"], {"REFRESH": "soon"}, "REFRESH is whole seconds > 0, got 'soon'"),
        (["--prepare", "no/such.tar.xz"], {}, "data archive no/such.tar.xz not found"),
    ):
        bad = subprocess.run(["bash", str(SESSION), *args], capture_output=True, text=True, env={**os.environ, **env})
        assert bad.returncode == 2 and bad.stderr.startswith(f"gpu_session: {message}"), bad.stderr
        assert len(bad.stderr.strip().splitlines()) == 1


def test_session_refuses_a_work_folder_inside_out(tmp_path):
    env = {**os.environ, "OUT": str(tmp_path), "WORK": str(tmp_path / "work")}
    inside = subprocess.run(["bash", str(SESSION), "--rehearse"], capture_output=True, text=True, env=env)
    assert inside.returncode == 2 and "must lie outside OUT" in inside.stderr and not (tmp_path / "work").exists()


@pytest.mark.slow  # subprocesses: gpu_check.sh and gpu_protocol.py
@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA behaviour")
def test_session_without_cuda_skips_the_checks_and_refuses_the_protocol(tmp_path):
    archive = tmp_path / "cifar10-jpeg.tar.xz"
    archive.write_bytes(b"")  # never opened without CUDA
    env = {**os.environ, "PYTHON": sys.executable, "OMP_NUM_THREADS": "1", "OUT": str(tmp_path / "out"),
           "WORK": str(tmp_path / "work")}  # fmt: skip
    result = subprocess.run(["bash", str(SESSION), str(archive), "60", "30"], capture_output=True, text=True,
                            env=env, timeout=120)  # fmt: skip
    lines = check_lines(result.stdout)
    assert lines.pop("environment") == "PASS" and set(lines.values()) == {"SKIP"}
    assert "torch.cuda.is_available() is False; --tiny runs the CPU smoke test" in result.stdout
    assert "gpu_check exit 0 (ok), gpu_protocol exit 2 (refused)" in result.stdout and result.returncode == 2
    assert (tmp_path / "out" / "gpu_check.json").is_file() and (tmp_path / "out" / "check.log").is_file()


# ---------------------------------------------------------------- the session's $OUT, as the device tool returns it

OUT_NAME = re.compile(r"[A-Za-z0-9._-]+")


def assert_comes_back_whole(out: Path) -> list[str]:
    """The device tool's limits on $OUT: at most 8 files, no deeper than $OUT/a/b/file, 16 MiB each, allowed names;
    and ours: no checkpoint, the tarball readable and without checkpoints. Returns the file names."""
    files = [path for path in out.rglob("*") if path.is_file()]
    assert len(files) <= 8, files
    for path in files:
        parts = path.relative_to(out).parts
        assert len(parts) <= 3 and all(OUT_NAME.fullmatch(part) for part in parts), path
        assert path.stat().st_size <= 16 * 2**20 and "checkpoint" not in path.name, path
    if (out / "results.tar.gz").is_file():
        with tarfile.open(out / "results.tar.gz") as tar:
            names = tar.getnames()
        assert names and not [n for n in names if "checkpoint" in n or n.endswith((".pt", ".prev"))], names
    return sorted(path.name for path in files)


def session_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    return {**os.environ, "PYTHON": sys.executable, "OMP_NUM_THREADS": "1", "OUT": str(tmp_path / "out"),
            "WORK": str(tmp_path / "work"), **extra}  # fmt: skip


@pytest.mark.slow  # the whole session on the CPU at its shortest: ~20 s on 2 busy cores
def test_rehearsal_leaves_at_most_eight_small_files_and_no_checkpoint_in_out(tmp_path):
    # 10 s of checks: the environment and data, then the resume check cut off by the deadline (a SKIP, not a
    # failure); 3 tiny seeds of protocol, or as many as 90 s allow (one at least). The protocol's budget costs
    # nothing on a quiet machine (3 seeds end it); under load (6 s of checks and 25 s were too few with a load
    # average of 6.5 on 2 cores) it keeps the test from failing for lack of time.
    result = subprocess.run(["bash", str(SESSION), "--rehearse", "10", "90"], capture_output=True, text=True,
                            env=session_env(tmp_path, REFRESH="2"), timeout=300)  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "gpu_check exit 0 (ok), gpu_protocol exit 0 (ok)" in result.stdout
    names = assert_comes_back_whole(tmp_path / "out")
    assert {"gpu_check.json", "check.log", "gpu_record.json", "protocol.log", "summary.json", "summary.md",
            "results.tar.gz"} == set(names)  # fmt: skip
    checks = {c["name"]: c for c in json.loads((tmp_path / "out" / "gpu_check.json").read_text())["checks"]}
    assert checks["environment"]["status"] == "PASS" and "FAIL" not in {c["status"] for c in checks.values()}
    with tarfile.open(tmp_path / "out" / "results.tar.gz") as tar:
        names = set(tar.getnames())
    tiny = "gpu-protocol-tiny"
    assert {"check/gpu_check.json", f"{tiny}/protocol.toml", f"{tiny}/forest.png", f"{tiny}/frontier.png"} <= names
    assert f"{tiny}/setting-A/proposed/seed-0/final.json" in names and f"{tiny}/cost_ratio.json" in names
    # gpu_protocol.py --tiny: the record and summary of the finished seeds, whose checkpoints are deleted.
    record = json.loads((tmp_path / "out" / "gpu_record.json").read_text())
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert record["seeds_completed"] and summary["seeds"] == record["seeds_completed"] and record["git_commit"]
    assert record["cost_ratio"] == {"value": 2.0, "source": "declared"} and record["budget_seconds"] == 90
    # The session's default protocol is issue 20's GPU frontier: the baseline at four budgets and the cheap modes.
    assert record["cost_ratios"]["gated"] == {"value": 1.25, "source": "declared"}
    budgets = {"baseline", "baseline-x1.5", "baseline-x2", "baseline-x3"}
    assert set(record["epoch_seconds"]) == budgets | {"proposed", "gated", "weighted", "weighted-equal-time"}
    assert "| proposed - baseline |" in result.stdout and "| best reachable |" in result.stdout
    assert summary["design"]["branch_at"] == 0.5 and summary["base_config"]["model"] == "fast_resnet"
    for seed in record["seeds_completed"]:
        runs = list((tmp_path / "work" / "gpu-protocol-tiny").glob(f"setting-A/*/seed-{seed}"))
        assert len(runs) == 9 and not [f for run in runs for f in run.glob("checkpoint*")], runs  # trunk + 8 arms


@pytest.mark.slow  # a session killed -9 once its first seed is summarised: ~15 s
def test_a_session_killed_at_any_moment_has_returned_what_finished(tmp_path):
    env = session_env(tmp_path, REFRESH="1")
    session = subprocess.Popen(["bash", str(SESSION), "--rehearse", "3", "90"], env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
    summary = tmp_path / "out" / "summary.json"
    try:
        deadline = time.monotonic() + 150
        while not summary.is_file() and session.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        os.killpg(session.pid, signal.SIGKILL)  # the device tool at its limit: no trap, no final refresh
        session.wait()
    assert summary.is_file(), "no seed was summarised in $OUT before the kill"
    names = assert_comes_back_whole(tmp_path / "out")
    assert {"gpu_check.json", "gpu_record.json", "summary.json", "results.tar.gz"} <= set(names)
    assert json.loads(summary.read_text())["seeds"]


# ---------------------------------------------------------------- library parts the GPU machine relies on


def test_bench_and_training_share_the_cudnn_setting(monkeypatch):
    from lossaug.run import pipeline

    current = []
    monkeypatch.setattr(torch.cuda, "set_device", current.append)
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", False)
    pipeline.use_device(torch.device("cpu"))
    assert not current and torch.backends.cudnn.benchmark is False
    pipeline.use_device(torch.device("cuda", 0))
    assert current == [torch.device("cuda", 0)] and torch.backends.cudnn.benchmark is True
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", False)
    monkeypatch.setattr(torch, "are_deterministic_algorithms_enabled", lambda: True)
    pipeline.use_device(torch.device("cuda", 0))
    assert torch.backends.cudnn.benchmark is False  # deterministic kernels: no autotuning


def test_commit_is_recorded_without_git_from_the_variable_or_the_file(tmp_path, monkeypatch):
    from lossaug.errors import InputError
    from lossaug.run import metadata

    commit = "0123456789abcdef0123456789abcdef01234567"
    monkeypatch.setattr(metadata, "_git", lambda *args: None)  # a copy without .git
    monkeypatch.setattr(metadata, "COMMIT_FILE", tmp_path / ".git_commit")
    monkeypatch.delenv(metadata.COMMIT_VARIABLE, raising=False)
    assert metadata.git_commit() is None and metadata.git_dirty() is None
    (tmp_path / ".git_commit").write_text(f"{commit} dirty\n")  # what gpu_session.sh --prepare writes
    assert metadata.git_commit() == commit and metadata.git_dirty() is True
    monkeypatch.setenv(metadata.COMMIT_VARIABLE, commit[:12])
    assert metadata.git_commit() == commit[:12] and metadata.git_dirty() is None
    monkeypatch.setenv(metadata.COMMIT_VARIABLE, "main")
    with pytest.raises(InputError, match="LOSSAUG_GIT_COMMIT should hold a commit"):
        metadata.git_commit()


def test_plots_beside_results_are_skipped_without_matplotlib_and_the_report_says_so(tmp_path, monkeypatch):
    from lossaug import plots

    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib raises ImportError
    record = {"epoch": 1, "elapsed_seconds": 1.0, "test_error": 0.5, "train_loss": 1.0}
    with pytest.warns(UserWarning, match="curves.png not written: plots need matplotlib"):
        assert plots.plot_curves({"run": [record]}, tmp_path / "curves.png") is None
    with pytest.warns(UserWarning, match="forest.png not written"):
        assert plots.plot_forest([("a", -0.1, 0.2)], tmp_path / "forest.png", margin=0.5) is None
    with warnings.catch_warnings(), pytest.raises(plots.MatplotlibMissing, match="plots need matplotlib"):
        plots.plot_report({"run": [record]}, tmp_path / "report.png")
    assert not list(tmp_path.iterdir())
