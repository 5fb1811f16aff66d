"""torchrun with 2 CPU processes (gloo): sharded data, identical weights on both ranks, resume."""

import json
import os
import subprocess
import sys

import pytest
import torch.distributed

pytestmark = pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed not built")


def torchrun(*argv: str, cache) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "LOSSAUG_CACHE": str(cache)}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "lossaug"]
    return subprocess.run([*command, *argv], capture_output=True, text=True, env=env, timeout=300)


def test_two_process_gloo_run_keeps_ranks_identical_and_resumes(tmp_path):
    out = tmp_path / "run"
    tiny = ["--dataset", "mini", "--train-size", "256", "--model", "cnn", "--width", "4", "--batch-size", "32",
            "--device", "cpu"]  # fmt: skip
    first = torchrun("train", *tiny, "--epochs", "1", "--out", str(out), cache=tmp_path / "cache")
    assert first.returncode == 0, first.stderr[-3000:]
    final = json.loads((out / "final.json").read_text())
    assert final["world_size"] == 2
    checksums = final["rank_parameter_checksums"]
    assert len(checksums) == 2 and checksums[0] == checksums[1]
    assert first.stdout.count("test error") == 1  # only rank 0 prints and writes

    resumed = torchrun("train", "--resume", str(out), "--epochs", "2", cache=tmp_path / "cache")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    final = json.loads((out / "final.json").read_text())
    assert final["epochs"] == 2 and final["rank_parameter_checksums"][0] == final["rank_parameter_checksums"][1]
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 2
