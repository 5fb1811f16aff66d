"""torchrun with 2 CPU processes (gloo): sharded data, identical weights on both ranks, resume."""

import json
import os
import subprocess
import sys

import pytest
import torch.distributed

pytestmark = [
    pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed not built"),
    pytest.mark.slow,  # torchrun: two worker processes per run
]


def torchrun(*argv: str, cache) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "LOSSAUG_CACHE": str(cache)}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "lossaug"]
    return subprocess.run([*command, *argv], capture_output=True, text=True, env=env, timeout=300)


def test_sigterm_under_torchrun_then_resume_equals_the_uninterrupted_run(tmp_path):
    """Also the plain two-process run: ranks identical, only rank 0 writes (one test: each torchrun costs three
    Python processes)."""
    import signal
    import time

    import torch

    # Gated (half of each rank's share scored): the per-image loss table is gathered from both ranks every step.
    tiny = ["--dataset", "mini", "--train-size", "1024", "--model", "cnn", "--width", "4", "--batch-size", "32",
            "--epochs", "2", "--device", "cpu", "--checkpoint-every", "2", "--score-fraction", "0.5"]  # fmt: skip
    reference, stopped = tmp_path / "reference", tmp_path / "stopped"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "LOSSAUG_CACHE": str(tmp_path / "cache")}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "lossaug"]
    process = subprocess.Popen([*command, "train", *tiny, "--out", str(stopped)], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    deadline = time.monotonic() + 120
    while not (stopped / "checkpoint.pt").exists():
        assert process.poll() is None and time.monotonic() < deadline, process.communicate()
        time.sleep(0.02)
    process.send_signal(signal.SIGTERM)  # torchrun passes it on to both workers
    process.communicate(timeout=120)
    saved = torch.load(stopped / "checkpoint.pt", weights_only=True)
    assert saved["global_step"] < 64, "the run finished before the signal; the test proves nothing"

    resumed = torchrun("train", "--resume", str(stopped), cache=tmp_path / "cache")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    done = torchrun("train", *tiny, "--out", str(reference), cache=tmp_path / "cache")
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("test error") == 1  # the final line: only rank 0 prints and writes
    for run in (reference, stopped):  # DDP keeps the replicas identical, across a SIGTERM and a resume too
        final = json.loads((run / "final.json").read_text())
        checksums = final["rank_parameter_checksums"]
        assert final["world_size"] == 2 and len(checksums) == 2 and checksums[0] == checksums[1]
        assert len((run / "metrics.jsonl").read_text().splitlines()) == 2  # one line per epoch, none repeated
    final = torch.load(stopped / "checkpoint.pt", weights_only=True)
    expected = torch.load(reference / "checkpoint.pt", weights_only=True)
    assert final["global_step"] == expected["global_step"] == 64
    for key, value in expected["model"].items():
        assert torch.equal(value, final["model"][key]), key
    # Every image was trained on, by one rank or the other, and both ranks' losses reached the saved table.
    assert torch.equal(final["stale_losses"], expected["stale_losses"]) and torch.isfinite(final["stale_losses"]).all()


def test_a_world_of_one_goes_through_ddp_and_matches_the_plain_run_bit_for_bit(tmp_path):
    """In a process group of one (gloo here; NCCL on one GPU in experiments/gpu_check.py) the loop wraps the model
    in DistributedDataParallel and runs every collective, and must end exactly where a plain run ends."""
    import torch

    from lossaug.run.train import TrainConfig, train

    # Gated, so that the per-image loss table goes through the all-reduce too.
    config = dict(dataset="mini", cache_dir=str(tmp_path / "cache"), train_size=256, model="cnn", width=4,
                  method="proposed", epochs=2, batch_size=32, device="cpu", checkpoint_every=3,
                  score_fraction=0.5)  # fmt: skip
    plain = train(TrainConfig(**config, out=str(tmp_path / "plain")))
    wrapped = []
    original = torch.nn.parallel.DistributedDataParallel

    class CountingDDP(original):
        def __init__(self, *args, **kwargs):
            wrapped.append(type(args[0]).__name__)
            super().__init__(*args, **kwargs)

    torch.distributed.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        torch.nn.parallel.DistributedDataParallel = CountingDDP
        grouped = train(TrainConfig(**config, out=str(tmp_path / "grouped")))
    finally:
        torch.nn.parallel.DistributedDataParallel = original
        torch.distributed.destroy_process_group()
    assert wrapped, "the model was not wrapped in DistributedDataParallel"
    final = json.loads((tmp_path / "grouped" / "final.json").read_text())
    assert final["world_size"] == 1 and len(final["rank_parameter_checksums"]) == 1
    assert "rank_parameter_checksums" not in json.loads((tmp_path / "plain" / "final.json").read_text())
    assert [m["train_loss"] for m in grouped.metrics] == [m["train_loss"] for m in plain.metrics]
    assert grouped.test_error == plain.test_error
    for key, value in plain.model.state_dict().items():
        assert torch.equal(value, grouped.model.state_dict()[key]), key


def test_under_torchrun_each_rank_takes_its_local_ranks_gpu(monkeypatch):
    """train() called under torchrun without torch.cuda.set_device must not put every rank on GPU 0 (NCCL would
    refuse); more local ranks than GPUs share them modulo the count. Faked: no GPU here."""
    import torch

    import lossaug.run.pipeline as pipeline
    from lossaug.run.distributed import World

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setenv("LOCAL_RANK", "3")
    monkeypatch.setattr(pipeline.World, "current", classmethod(lambda cls: World(3, 4, True)))
    assert pipeline.resolve_device("cuda") == torch.device("cuda", 1)
    assert pipeline.resolve_device("auto") == torch.device("cuda", 1)
    monkeypatch.setattr(pipeline.World, "current", classmethod(lambda cls: World()))
    assert pipeline.resolve_device("cuda") == torch.device("cuda", 0)  # no process group: the current device
