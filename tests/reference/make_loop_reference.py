"""Write tests/reference/loop_reference.pt: final weights and per-epoch train losses of tiny CPU runs, one per
method and cheaper-selection option, made by the training loop as it stood before the loop was restructured
(commit a1e6513). ``tests/test_loop_reference.py`` checks that today's loop reproduces them.

Usage: python tests/reference/make_loop_reference.py   (a few seconds; rewrite only when a change is *meant* to
alter the results, and say so in the commit message)
"""

import platform
import subprocess
from pathlib import Path

import torch

from lossaug.run.train import TrainConfig, train

HERE = Path(__file__).parent
TINY = dict(dataset="mini", train_size=128, model="cnn", width=4, epochs=2, batch_size=32, lr=0.05, device="cpu")
CASES = {
    "baseline": dict(method="baseline"),
    "proposed": dict(method="proposed"),
    "maxup": dict(method="maxup"),
    "select-every": dict(method="proposed", select_every=2),
    "select-from": dict(method="proposed", select_from=0.5),
    "proxy": dict(method="proposed", proxy_model="cnn", proxy_width=2),
    "setting-B": dict(method="proposed", setting="B", num_candidates=3),
}


def cpu_fingerprint() -> str:
    """CPU model and ISA flags: float results of the same code are bit-identical only on the same kind of CPU."""
    flags = model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and not model:
                model = line.split(":", 1)[1].strip()
            if line.startswith("flags") and not flags:
                flags = " ".join(sorted(f for f in line.split(":", 1)[1].split() if f.startswith(("avx", "fma"))))
    except OSError:
        pass
    return f"{platform.machine()} | {model} | {flags} | torch {torch.__version__} | threads {torch.get_num_threads()}"


def run_case(name: str) -> dict:
    result = train(TrainConfig(**TINY, **CASES[name]))
    return {
        "state": {k: v.clone() for k, v in result.model.state_dict().items()},
        "train_loss": [m["train_loss"] for m in result.metrics],
        "test_error": result.test_error,
    }


def main() -> None:
    commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    payload = {"commit": commit, "cpu": cpu_fingerprint(), "cases": {name: run_case(name) for name in CASES}}
    torch.save(payload, HERE / "loop_reference.pt")
    print(f"wrote {HERE / 'loop_reference.pt'} ({len(CASES)} cases, {payload['cpu']}, commit {commit[:10]})")


if __name__ == "__main__":
    main()
