"""CUDA smoke check of lossaug (issues 13, 21): every GPU code path once, with figures, in 200 s on one H200.

    bash experiments/gpu_check.sh data/cifar10-jpeg.tar.xz [RESULTS_DIR]      # the usual entry point
    python experiments/gpu_check.py --data ARCHIVE --results DIR [--budget 200] [--only a,b]
    python experiments/gpu_check.py --rehearse --results /tmp/rehearsal       # the checks on the CPU, mini data

The checks run in ``CHECKS``' order, the paths that crash or have never run on CUDA first. Each has an estimate of
its seconds on one H200 (Python and CUDA start-ups included) and the estimates add up to less than the default
budget, so all of them fit by construction; on CUDA a check whose estimate exceeds what is left is a SKIP
(``budget``), to rerun with ``--only``. Each check runs its commands in subprocesses with their own timeout (the
whole process group is killed at the timeout), so one failing or hanging check does not stop the others. A command
cut off by the budget's end is a SKIP (``deadline``), not a FAIL: the exit status counts real failures only.

One line per check, ``PASS``, ``FAIL`` or ``SKIP`` with the reason, and the figures; everything goes to
``DIR/gpu_check.json``, rewritten after every check, with each run's directory under ``DIR/runs`` (the checkpoints
are deleted once compared). Without CUDA every CUDA check is a SKIP line. ``--rehearse`` runs the same checks on the
CPU at toy sizes (the NCCL ones excepted), to find mistakes in this script before a GPU is at hand.

The script also serves its own subprocesses: ``env`` (environment JSON), ``deterministic-lossaug ARGS`` (the CLI
with deterministic kernels), ``train-api`` (``lossaug.run.train.train`` with an optional SIGTERM after a step),
``ddp-worker`` (``train`` under torchrun with a chosen backend), ``nccl-sanity``, ``bf16-scoring`` (train, then
score the same candidates in fp32 and in bf16) and ``compare`` (two runs' final weights).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SELF = [sys.executable, str(Path(__file__).resolve())]
LOSSAUG = [sys.executable, "-m", "lossaug"]
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
STATUSES = ("PASS", "FAIL", "SKIP")
BUDGET = 200.0  # seconds for all checks by default: what gpu_session.sh gives them


# ---------------------------------------------------------------- sizes


@dataclass(frozen=True)
class Scale:
    """What the checks train on: the full archive on CUDA, toy sizes of the bundled mini data in a rehearsal."""

    device: str  # "cuda", or "cpu" in a rehearsal
    data: tuple[str, ...]  # lossaug train options that select the data
    data_config: dict  # the same as TrainConfig fields
    subset: int  # train_size of the short runs
    width: int  # fast_resnet width of the short runs
    compile_width: int  # fast_resnet width of the compile check (the protocol's 64 on CUDA)
    batch_size: int
    interrupt_at: int  # global step after which the resume check sends SIGTERM (mid-epoch 1)
    bench: tuple[str, ...]  # lossaug bench options besides --device and --out
    score_rows: int  # images whose candidates the bf16 check scores in fp32 and in bf16


def cuda_scale(archive: str, cache: str) -> Scale:
    data = ("--dataset", "folder", "--data", archive, "--cache-dir", cache)
    return Scale(
        device="cuda",
        data=data,
        data_config=dict(dataset="folder", data=archive, cache_dir=cache),
        subset=10_000,
        width=16,
        compile_width=64,
        batch_size=512,
        interrupt_at=7,  # of 19 steps per epoch
        # The published model (PreActResNet-18 width 64, batch 128, M = 1, 2, 4, 8) and the cnn proxy in one process
        # (the proxy path crashed on CUDA in issue 13); 10 repeats: R's spread, not its third digit, is the point.
        bench=("--proxy-model", "cnn", "--repeats", "10", "--warmup", "2"),
        score_rows=2048,
    )


REHEARSAL_BENCH = ("--model", "cnn", "--width", "4", "--batch-size", "32", "--repeats", "2", "--warmup", "1",
                   "--proxy-model", "cnn", "--proxy-width", "4")  # fmt: skip


def rehearsal_scale(cache: str) -> Scale:
    return Scale(
        device="cpu",
        data=("--dataset", "mini", "--cache-dir", cache),
        data_config=dict(dataset="mini", cache_dir=cache),
        subset=256,
        width=4,
        compile_width=4,
        batch_size=64,
        interrupt_at=2,  # of 4 steps per epoch
        bench=REHEARSAL_BENCH,
        score_rows=256,
    )


# ---------------------------------------------------------------- running commands


@dataclass
class Run:
    """One subprocess: its command, exit status (None: killed at its timeout), seconds and output tails;
    ``deadline``: killed because the budget ran out before its own timeout."""

    command: list[str]
    returncode: int | None
    seconds: float
    stdout: str
    stderr: str
    deadline: bool = False

    def ok(self) -> bool:
        return self.returncode == 0

    def why(self) -> str:
        """The last meaningful stderr line, for a FAIL line."""
        if self.returncode is None:
            return f"{'stopped at the deadline' if self.deadline else 'timed out'} after {self.seconds:.0f}s"
        lines = [line.strip() for line in self.stderr.splitlines() if line.strip()]
        raised = [line for line in lines if re.match(r"(\[rank\d+\]: )?[\w.]*(Error|Exception)\b", line)]
        errors = [line for line in lines if re.search(r"error|exception|refused|invalid", line, re.IGNORECASE)]
        last = (raised or errors or lines or ["(no stderr)"])[-1]
        return f"exit {self.returncode}: {last[:200]}"

    def to_json(self) -> dict:
        return {
            "command": " ".join(self.command),
            "returncode": self.returncode,
            "deadline": self.deadline,
            "seconds": round(self.seconds, 2),
            "stdout_tail": self.stdout[-2000:],
            "stderr_tail": self.stderr[-4000:],
        }


@dataclass
class Context:
    """What every check needs: sizes, directories, the environment of its subprocesses and its time limit."""

    scale: Scale
    results: Path
    env: dict[str, str]
    deadline: float  # time.monotonic() by which the check must end
    gpus: int = 0  # CUDA devices visible
    runs: list[Run] = field(default_factory=list)

    def run(self, command: list[str], timeout: float, env: dict[str, str] | None = None) -> Run:
        """Run ``command`` in its own process group, killed (group and all) at ``timeout`` or the deadline."""
        left = self.deadline - time.monotonic()
        limit = max(1.0, min(timeout, left))
        started = time.monotonic()
        process = subprocess.Popen(
            command,
            cwd=ROOT,
            env={**self.env, **(env or {})},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        try:
            stdout, stderr = process.communicate(timeout=limit)
            code: int | None = process.returncode
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            stdout, stderr = process.communicate()
            code = None
        except BaseException:  # this script interrupted: take the command's whole group down with it
            os.killpg(process.pid, signal.SIGKILL)
            raise
        cut = code is None and left < timeout  # the budget's end, not the command's own timeout
        run = Run(command, code, time.monotonic() - started, stdout or "", stderr or "", deadline=cut)
        self.runs.append(run)
        return run

    def run_dir(self, check: str, name: str) -> Path:
        path = self.results / "runs" / check / name
        shutil.rmtree(path, ignore_errors=True)
        path.parent.mkdir(parents=True, exist_ok=True)
        return path


@dataclass
class Outcome:
    status: str
    figures: dict[str, Any] = field(default_factory=dict)
    note: str = ""


def metrics(run_dir: Path) -> list[dict]:
    path = run_dir / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.is_file() else []


def final(run_dir: Path) -> dict:
    path = run_dir / "final.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def train_options(scale: Scale, *, model: str = "fast_resnet", width: int | None = None, epochs: int = 1,
                  train_size: int | None = -1, method: str = "proposed") -> list[str]:  # fmt: skip
    """``lossaug train`` options of a short run; ``train_size=-1`` takes the scale's subset, None all images."""
    size = scale.subset if train_size == -1 else train_size
    options = [*scale.data, "--model", model, "--method", method, "--candidates", "4", "--epochs", str(epochs),
               "--eval-every", str(epochs), "--batch-size", str(scale.batch_size),
               "--device", scale.device]  # fmt: skip
    if width is not None:
        options += ["--width", str(width)]
    if size is not None:
        options += ["--train-size", str(size)]
    lr = {"fast_resnet": "0.4", "preact_resnet18": "0.2"}.get(model, "0.1")  # at batch 512
    return [*options, "--lr", lr]


def train_config(scale: Scale, **overrides: Any) -> dict:
    """TrainConfig fields of the short fast_resnet run (for the ``train-api`` and ``ddp-worker`` helpers)."""
    return {**scale.data_config, "model": "fast_resnet", "width": scale.width, "method": "proposed", "epochs": 2,
            "eval_every": 2, "train_size": scale.subset, "batch_size": scale.batch_size, "lr": 0.4,
            "device": scale.device, **overrides}  # fmt: skip


def drop_checkpoints(path: Path) -> None:
    for checkpoint in path.rglob("checkpoint*.pt*"):
        checkpoint.unlink(missing_ok=True)


# ---------------------------------------------------------------- the checks


def check_data(ctx: Context) -> Outcome:
    """Decode the archive into the cache once, so that the timed runs that follow start from the cache."""
    config = ctx.scale.data_config
    code = (
        "import json, sys, time; from pathlib import Path; from lossaug.data import load_dataset; t = time.time(); "
        f"d = load_dataset({config['dataset']!r}, {config.get('data')!r}, cache_dir=Path({config['cache_dir']!r})); "
        "print(json.dumps(dict(train=len(d.train.labels), test=len(d.test.labels), classes=d.num_classes, "
        "shape=list(d.train.images.shape[1:]), seconds=round(time.time() - t, 1))))"
    )
    run = ctx.run([sys.executable, "-c", code], timeout=150)
    if not run.ok():
        return Outcome("FAIL", note=run.why())
    return Outcome("PASS", json.loads(run.stdout.strip().splitlines()[-1]))


def check_bench(ctx: Context) -> Outcome:
    """lossaug bench on the device (cuDNN as training sets it): T, S, c and R(M) of the published model, and the
    steps scored by a cnn proxy."""
    out = ctx.results / "bench.json"
    run = ctx.run([*LOSSAUG, "bench", *ctx.scale.bench, "--device", ctx.scale.device, "--out", str(out)], timeout=120)
    if not run.ok() or not out.is_file():
        return Outcome("FAIL", note=run.why())
    result = json.loads(out.read_text())
    figures = {
        "T_ms": result.get("train_step_ms", {}).get("median"),
        "S_ms": result.get("score_forward_ms", {}).get("median"),
        "c": result.get("c"),
        "R": {str(t["candidates"]): round(t["ratio"], 3) for t in result.get("per_candidates", [])},
        "proxy_step_ms": {m: s.get("median") for m, s in result.get("proxy_step_ms", {}).items()},
    }
    return Outcome("PASS", figures)


def compare_runs(ctx: Context, first: Path, second: Path) -> dict:
    """``compare`` helper output: whether the final weights and metrics of two runs are identical."""
    run = ctx.run([*SELF, "compare", str(first), str(second)], timeout=60)
    if not run.ok():
        return {"error": run.why()}
    return json.loads(run.stdout.strip().splitlines()[-1])


def check_placement(ctx: Context) -> Outcome:
    """Data on the device vs pinned host memory: one deterministic epoch of the subset, same weights expected."""
    dirs = {}
    for placement in ("device", "host"):
        out = ctx.run_dir("placement", placement)
        options = [*train_options(ctx.scale, width=ctx.scale.width), "--data-placement", placement, "--out", str(out)]
        run = ctx.run([*SELF, "deterministic-lossaug", "train", *options], timeout=90)
        if not run.ok():
            return Outcome("FAIL", note=f"{placement}: {run.why()}")
        dirs[placement] = out
    same = compare_runs(ctx, dirs["device"], dirs["host"])
    for path in dirs.values():
        drop_checkpoints(path)
    seconds = {p: [round(r["seconds"], 3) for r in metrics(d)] for p, d in dirs.items()}
    figures = {**same, "epoch_seconds": seconds}
    return Outcome("PASS" if same.get("identical") else "FAIL", figures, same.get("error", ""))


def check_resume(ctx: Context) -> Outcome:
    """SIGTERM after a step in the middle of epoch 1 of 2, resume, compare with the uninterrupted run (both with
    deterministic kernels)."""
    whole, cut = ctx.run_dir("resume", "uninterrupted"), ctx.run_dir("resume", "interrupted")
    helper = [*SELF, "train-api", "--deterministic"]
    run = ctx.run([*helper, json.dumps(train_config(ctx.scale, out=str(whole)))], timeout=90)
    if not run.ok():
        return Outcome("FAIL", note=f"uninterrupted: {run.why()}")
    config = json.dumps(train_config(ctx.scale, out=str(cut)))
    stopped = ctx.run([*helper, "--interrupt-at", str(ctx.scale.interrupt_at), config], timeout=90)
    if stopped.returncode != 128 + signal.SIGTERM:
        return Outcome("FAIL", note=f"interrupted run should exit 143: {stopped.why()}")
    resumed = ctx.run([*helper, "--resume", config], timeout=90)
    if not resumed.ok():
        return Outcome("FAIL", note=f"resume: {resumed.why()}")
    same = compare_runs(ctx, whole, cut)
    drop_checkpoints(whole)
    drop_checkpoints(cut)
    figures = {**same, "interrupted_after_step": ctx.scale.interrupt_at, "epochs": len(metrics(cut))}
    return Outcome("PASS" if same.get("identical") else "FAIL", figures, same.get("error", ""))


def check_nonfinite(ctx: Context) -> Outcome:
    """lr 1e6 with --on-nonfinite skip: a clean non-zero exit or counted skipped steps; never a traceback."""
    out = ctx.run_dir("nonfinite", "run")
    options = [*train_options(ctx.scale, width=ctx.scale.width), "--lr", "1e6", "--on-nonfinite", "skip"]
    run = ctx.run([*LOSSAUG, "train", *options, "--out", str(out)], timeout=90)
    drop_checkpoints(out)
    rows = metrics(out)
    figures = {
        "returncode": run.returncode,
        "nonfinite_steps": [r.get("nonfinite_steps") for r in rows],
        "fallback_rows": [r.get("fallback_rows") for r in rows],
        "train_loss": [r.get("train_loss") for r in rows],
    }
    if run.returncode is None or "Traceback" in run.stderr:
        return Outcome("FAIL", figures, run.why())
    if run.returncode == 0 and not any(figures["nonfinite_steps"]):
        return Outcome("FAIL", figures, "no non-finite step happened: the skip path did not run")
    return Outcome("PASS", figures, "" if run.ok() else run.why())


def check_compile(ctx: Context) -> Outcome:
    """--compile-scoring on for 2 epochs: compile time in epoch 1, no recompiles or graph breaks after it."""
    out = ctx.run_dir("compile_scoring", "run")
    options = [*train_options(ctx.scale, width=ctx.scale.compile_width, epochs=2), "--compile-scoring", "on"]
    run = ctx.run([*LOSSAUG, "train", *options, "--out", str(out)], timeout=180,
                  env={"TORCH_LOGS": "recompiles,graph_breaks"})  # fmt: skip
    drop_checkpoints(out)
    recompiles = [line.strip() for line in run.stderr.splitlines() if "Recompiling function" in line]
    breaks = [line.strip() for line in run.stderr.splitlines() if "Graph break" in line]
    reasons = [line.strip() for line in run.stderr.splitlines() if "triggered by the following guard" in line]
    figures = {
        "epoch_seconds": [round(r["seconds"], 3) for r in metrics(out)],
        "recompiles": len(recompiles),
        "graph_breaks": len(breaks),
        "first_lines": (recompiles + reasons + breaks)[:6],
    }
    if not run.ok():
        return Outcome("FAIL", figures, run.why())
    return Outcome("PASS" if not recompiles else "FAIL", figures, "recompiled" if recompiles else "")


def check_nccl_sanity(ctx: Context) -> Outcome:
    """NCCL itself: one process per GPU, all_reduce, broadcast and a few DDP steps in bf16."""
    run = ctx.run([*TORCHRUN, f"--nproc_per_node={max(1, ctx.gpus)}", *SELF[1:], "nccl-sanity"], timeout=90)
    if not run.ok():
        return Outcome("FAIL", note=run.why())
    return Outcome("PASS", json.loads(run.stdout.strip().splitlines()[-1]))


def ddp_train(backend: str, world: int) -> Callable[[Context], Outcome]:
    def check(ctx: Context) -> Outcome:
        if backend == "nccl" and ctx.gpus < world:  # NCCL refuses two ranks on one GPU: no budget spent on it
            return Outcome("SKIP", note=f"NCCL needs a GPU per rank ({ctx.gpus} GPU for {world} ranks); "
                           "ddp_world1_nccl runs the same code over NCCL")  # fmt: skip
        out = ctx.run_dir(f"ddp_world{world}_{backend}", "run")
        config = json.dumps(train_config(ctx.scale, epochs=1, eval_every=1, out=str(out)))
        worker = [*TORCHRUN, f"--nproc_per_node={world}", *SELF[1:], "ddp-worker", "--backend", backend, config]
        run = ctx.run(worker, timeout=120)
        drop_checkpoints(out)
        return ddp_outcome(run, final(out), world)

    where = "both ranks on GPU 0 when there is one GPU" if world > 1 else "DDP and every collective in a world of one"
    check.__doc__ = f"lossaug.run.train.train at world {world} over {backend} on CUDA ({where})."
    return check


def check_torchrun_cli(ctx: Context) -> Outcome:
    """The documented command: torchrun --nproc_per_node=2 -m lossaug train ... --device cuda."""
    out = ctx.run_dir("torchrun_cli", "run")
    options = train_options(ctx.scale, width=ctx.scale.width)
    run = ctx.run([*TORCHRUN, "--nproc_per_node=2", "-m", "lossaug", "train", *options, "--out", str(out)],
                  timeout=120)  # fmt: skip
    drop_checkpoints(out)
    return ddp_outcome(run, final(out), 2)  # on one GPU the CLI joins over gloo


def ddp_outcome(run: Run, summary: dict, world: int) -> Outcome:
    """PASS when the run finished with ``world`` equal per-rank parameter checksums in final.json (written only
    by a run inside a process group)."""
    checksums = summary.get("rank_parameter_checksums")
    figures = {"world_size": summary.get("world_size"), "rank_parameter_checksums": checksums,
               "test_error": summary.get("test_error"), "wall_seconds": round(run.seconds, 1)}  # fmt: skip
    if run.ok() and checksums and len(checksums) == world and len(set(checksums)) == 1:
        return Outcome("PASS", figures)
    return Outcome("FAIL", figures, run.why() if not run.ok() else f"checksums differ or missing: {checksums}")


def check_bf16_scoring(ctx: Context) -> Outcome:
    """Training scores candidates in bf16 on CUDA: on a trained network, the same candidates scored in fp32 and in
    bf16 must give nearly the same selection probabilities and picks, and bf16 must not add fallback rows (all
    scores zero or non-finite, selected uniformly). Runs in a rehearsal too (CPU autocast)."""
    config = train_config(ctx.scale, epochs=2, eval_every=2)
    run = ctx.run([*SELF, "bf16-scoring", "--rows", str(ctx.scale.score_rows), json.dumps(config)], timeout=90)
    if not run.ok():
        return Outcome("FAIL", note=run.why())
    figures = json.loads(run.stdout.strip().splitlines()[-1])
    problems = bf16_problems(figures)
    return Outcome("FAIL" if problems else "PASS", figures, "; ".join(problems))


def bf16_problems(figures: dict) -> list[str]:
    """What in the bf16 check's figures fails it. Bounds: bf16 keeps 8 significant bits (0.4% rounding), so a
    loss moves by about 1% through the network and the probabilities (M = 4, temperature 1, proportional to the
    losses) by far less than the 0.02 of total variation allowed on average. The CPU rehearsal measured 7.5e-05."""
    problems = []
    if figures["tv_mean"] > 0.02:
        problems.append(f"mean total variation between fp32 and bf16 probabilities {figures['tv_mean']:.4f} > 0.02")
    if figures["same_pick"] < 0.95:
        problems.append(f"only {figures['same_pick']:.1%} of rows pick the same candidate (< 95%)")
    extra = figures["fallback_rows"]["bf16"] - figures["fallback_rows"]["fp32"]
    if extra > max(1, 0.01 * figures["rows"]):
        problems.append(f"bf16 adds {extra} fallback rows of {figures['rows']}")
    return problems


@dataclass(frozen=True)
class Check:
    """A check and its estimated seconds on one H200, start-ups of Python, CUDA and torchrun included."""

    run: Callable[[Context], Outcome]
    seconds: float


# In order of what a short budget must not miss: the paths that have crashed or never run on CUDA first, then the
# most informative. The estimates add up to 180 s (< BUDGET) with the environment's 5 s; the last three are the
# least informative (ddp_world2_nccl runs only with two GPUs, and costs nothing with one). Dropped in issue 21: the
# epoch times (the protocol measures them on the full data), ddp_world2_gloo (torchrun_cli_2proc is the same
# world over gloo) and the separate plain bench (the proxy bench times the same steps too).
CHECKS: dict[str, Check] = {
    "data": Check(check_data, 25),  # decodes the archive into the cache the protocol then reads
    "resume_after_sigterm": Check(check_resume, 25),
    "bench": Check(check_bench, 15),
    "compile_scoring": Check(check_compile, 45),
    "ddp_world1_nccl": Check(ddp_train("nccl", 1), 12),
    "torchrun_cli_2proc": Check(check_torchrun_cli, 15),
    "bf16_scoring": Check(check_bf16_scoring, 10),
    "nonfinite_skip": Check(check_nonfinite, 8),
    "placement_device_vs_host": Check(check_placement, 12),
    "nccl_sanity": Check(check_nccl_sanity, 8),
    "ddp_world2_nccl": Check(ddp_train("nccl", 2), 0),
}
CUDA_ONLY = {"nccl_sanity", "ddp_world1_nccl", "ddp_world2_nccl"}  # no CPU rehearsal for these
ENVIRONMENT_SECONDS = 5.0  # the environment check, before CHECKS


# ---------------------------------------------------------------- the orchestrator


def environment(env: dict[str, str]) -> tuple[Run, dict]:
    started = time.monotonic()
    result = subprocess.run([*SELF, "env"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    run = Run([*SELF, "env"], result.returncode, time.monotonic() - started, result.stdout, result.stderr)
    info = json.loads(result.stdout.strip().splitlines()[-1]) if run.ok() else {}
    return run, info


def format_figures(figures: dict) -> str:
    text = json.dumps(figures, separators=(",", ":"), default=str)
    return text if len(text) <= 220 else text[:217] + "..."


def deadline_is_skip(outcome: Outcome, runs: list[Run]) -> Outcome:
    """A check that failed because the budget's end cut one of its commands off is a SKIP: nothing is known broken."""
    if outcome.status == "FAIL" and any(r.deadline for r in runs):
        return Outcome("SKIP", outcome.figures, f"deadline: {outcome.note}")
    return outcome


def orchestrate(args: argparse.Namespace) -> int:
    started = time.monotonic()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # unwinds through Context.run, which kills its group
    results = Path(args.results)
    results.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT / "src"), os.environ.get("PYTHONPATH")]))}
    env.setdefault("LOSSAUG_CACHE", str(Path(args.cache_dir).resolve()))
    if args.rehearse:
        env["OMP_NUM_THREADS"] = env.get("OMP_NUM_THREADS", "1")
    record: dict[str, Any] = {"started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "budget_seconds": args.budget,
                              "rehearsal": args.rehearse, "data": args.data, "checks": []}  # fmt: skip

    def report(name: str, outcome: Outcome, seconds: float, runs: list[Run]) -> None:
        line = f"{outcome.status:5} {name:28} {seconds:6.1f}s  {format_figures(outcome.figures)}"
        print(line + (f"  -- {outcome.note}" if outcome.note else ""), flush=True)
        record["checks"].append({"name": name, "status": outcome.status, "seconds": round(seconds, 2),
                                 "figures": outcome.figures, "note": outcome.note,
                                 "runs": [r.to_json() for r in runs]})  # fmt: skip
        record["wall_seconds"] = round(time.monotonic() - started, 1)
        tmp = results / "gpu_check.json.tmp"
        tmp.write_text(json.dumps(record, indent=2, default=str) + "\n")
        os.replace(tmp, results / "gpu_check.json")

    run, info = environment(env)
    record["environment"] = info
    cuda = bool(info.get("cuda_available"))
    report("environment", Outcome("PASS" if run.ok() else "FAIL", info, "" if run.ok() else run.why()), run.seconds,
           [] if run.ok() else [run])  # fmt: skip
    if cuda and not args.rehearse and not Path(args.data).exists():
        print(f"gpu_check: data archive {args.data} not found (copy it into the checkout, e.g. data/)", file=sys.stderr)
        return 2
    cache = str(Path(args.cache_dir).resolve())
    scale = rehearsal_scale(cache) if args.rehearse else cuda_scale(str(Path(args.data).resolve()), cache)
    only = set(args.only.split(",")) if args.only else None
    for name, check in CHECKS.items():
        if only is not None and name not in only:
            continue
        remaining = args.budget - (time.monotonic() - started)
        # The estimates are H200 seconds: a rehearsal starts any check while a few seconds are left.
        needed = check.seconds if not args.rehearse else 3.0
        if not run.ok():
            report(name, Outcome("SKIP", note="the environment check failed"), 0.0, [])
        elif not cuda and not args.rehearse:
            report(name, Outcome("SKIP", note="no CUDA device (torch.cuda.is_available() is False)"), 0.0, [])
        elif args.rehearse and name in CUDA_ONLY:
            report(name, Outcome("SKIP", note="CUDA only"), 0.0, [])
        elif remaining < needed or remaining <= 0:
            note = f"budget: needs ~{needed:.0f}s, {max(remaining, 0):.0f}s left of {args.budget:.0f}s"
            report(name, Outcome("SKIP", note=note), 0.0, [])
        else:
            gpus = int(info.get("cuda_device_count") or 0)
            ctx = Context(scale, results, env, deadline=time.monotonic() + remaining, gpus=gpus)
            check_started = time.monotonic()
            try:
                outcome = check.run(ctx)
            except Exception as error:  # a bug in this script or unexpected output: record it, go on
                outcome = Outcome("FAIL", note=f"{type(error).__name__}: {error}")
            except SystemExit:  # SIGTERM (gpu_session.sh's timeout): the record says which check it cut off
                report(name, Outcome("SKIP", note="deadline: terminated"), time.monotonic() - check_started, ctx.runs)
                raise
            report(name, deadline_is_skip(outcome, ctx.runs), time.monotonic() - check_started, ctx.runs)
    counts = {s: sum(c["status"] == s for c in record["checks"]) for s in STATUSES}
    print(f"gpu_check: {counts} in {time.monotonic() - started:.0f}s; wrote {results / 'gpu_check.json'}")
    return 1 if counts["FAIL"] else 0


# ---------------------------------------------------------------- helpers run as subprocesses


def helper_env() -> dict:
    """Versions and capabilities of this machine, as JSON-ready values."""
    import platform

    import torch

    from lossaug.run.metadata import git_commit, git_dirty

    info: dict[str, Any] = {
        "python": platform.python_version(),
        "torch_version": torch.__version__,
        "torch_cuda_version": torch.version.cuda,
        "cuda_available": torch.cuda.is_available(),
        "cuda_device_count": torch.cuda.device_count() if torch.cuda.is_available() else 0,
        "cpu_count": os.cpu_count(),
        "git_commit": git_commit(),
        "git_dirty": git_dirty(),
        "distributed_available": torch.distributed.is_available(),
        "nccl_available": torch.distributed.is_available() and torch.distributed.is_nccl_available(),
        "gloo_available": torch.distributed.is_available() and torch.distributed.is_gloo_available(),
    }
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        info.update(
            gpu=torch.cuda.get_device_name(0),
            gpu_memory_gib=round(props.total_memory / 2**30, 1),
            compute_capability=f"{props.major}.{props.minor}",
            bf16_supported=torch.cuda.is_bf16_supported(),
            cudnn_version=torch.backends.cudnn.version(),
        )
        if info["nccl_available"]:
            info["nccl_version"] = ".".join(map(str, torch.cuda.nccl.version()))
    for module in ("triton", "torchvision", "numpy", "PIL", "matplotlib"):
        try:
            imported = __import__(module)
            info[f"{module}_version"] = getattr(imported, "__version__", "?")
        except Exception as error:  # noqa: BLE001  (any import failure is a fact to record)
            info[f"{module}_version"] = f"not importable: {type(error).__name__}"
    return info


def set_deterministic() -> None:
    """Deterministic kernels (warn where none exists), so that two runs that should agree agree bit for bit."""
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    import torch

    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.benchmark = False


def helper_deterministic_lossaug(argv: list[str]) -> int:
    set_deterministic()
    from lossaug.cli import main as lossaug_main

    return lossaug_main(argv)


def helper_train_api(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="gpu_check.py train-api")
    parser.add_argument("config", help="TrainConfig fields as JSON")
    parser.add_argument("--interrupt-at", type=int, help="SIGTERM this process after this global step")
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--deterministic", action="store_true")
    args = parser.parse_args(argv)
    if args.deterministic:
        set_deterministic()
    from lossaug.run.train import TrainConfig, TrainingInterrupted, train

    def on_step(step: int, _selection: Any) -> None:
        if step == args.interrupt_at:
            os.kill(os.getpid(), signal.SIGTERM)  # honoured after this step: checkpoint, TrainingInterrupted

    try:
        train(TrainConfig(**json.loads(args.config)), on_step=on_step if args.interrupt_at else None,
              resume=args.resume)  # fmt: skip
    except TrainingInterrupted as stop:
        print(stop, file=sys.stderr)
        return stop.exit_code
    return 0


def helper_ddp_worker(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="gpu_check.py ddp-worker")
    parser.add_argument("--backend", choices=("gloo", "nccl"), required=True)
    parser.add_argument("config", help="TrainConfig fields as JSON")
    args = parser.parse_args(argv)
    import torch
    import torch.distributed as dist

    from lossaug.run.train import TrainConfig, train

    config = json.loads(args.config)
    if config.get("device") == "cuda":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")) % torch.cuda.device_count())
    dist.init_process_group(args.backend)
    try:
        train(TrainConfig(**config))
        dist.barrier()
    finally:
        dist.destroy_process_group()
    return 0


def helper_nccl_sanity() -> int:
    import torch
    import torch.distributed as dist
    import torch.nn.functional as F

    from lossaug.models import build_model

    local = int(os.environ.get("LOCAL_RANK", "0"))
    torch.cuda.set_device(local)
    dist.init_process_group("nccl")
    rank, world = dist.get_rank(), dist.get_world_size()
    device = torch.device("cuda", local)
    total = torch.ones(1, device=device)
    dist.all_reduce(total)
    value = torch.full((3,), float(rank), device=device)
    dist.broadcast(value, src=0)
    torch.manual_seed(0)
    model = build_model("fast_resnet", 10, width=8).to(device)
    ddp = torch.nn.parallel.DistributedDataParallel(model, device_ids=[local])
    optimizer = torch.optim.SGD(ddp.parameters(), lr=0.1, momentum=0.9)
    generator = torch.Generator(device=device).manual_seed(rank)
    for _ in range(3):
        images = torch.randn(64, 3, 32, 32, device=device, generator=generator)
        labels = torch.randint(0, 10, (64,), device=device, generator=generator)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = F.cross_entropy(ddp(images).float(), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    checksum = torch.stack([p.detach().double().sum() for p in model.parameters()]).sum().view(1)
    every = [torch.zeros_like(checksum) for _ in range(world)]
    dist.all_gather(every, checksum)
    dist.barrier()
    dist.destroy_process_group()
    same = all(float(c) == float(every[0]) for c in every)
    if rank == 0:
        print(json.dumps({"world_size": world, "all_reduce_ok": float(total) == world,
                          "broadcast_ok": bool((value == 0).all()), "ddp_checksums_equal": same}))  # fmt: skip
    return 0 if same and float(total) == world else 1


def helper_bf16_scoring(argv: list[str]) -> int:
    """Train the config's network, then score the same candidates of its first training images in fp32 and in
    bf16 (autocast) and select with the same random draws; print how far the two selections are apart."""
    parser = argparse.ArgumentParser(prog="gpu_check.py bf16-scoring")
    parser.add_argument("config", help="TrainConfig fields as JSON")
    parser.add_argument("--rows", type=int, default=2048, help="training images whose candidates are scored")
    args = parser.parse_args(argv)
    import dataclasses

    import torch

    from lossaug.run.method import method_for
    from lossaug.run.pipeline import make_generator, prepare_data, resolve_device
    from lossaug.run.train import TrainConfig, train

    config = TrainConfig(**json.loads(args.config))
    model = train(config).model
    device = resolve_device(config.device)
    data = prepare_data(config, device, None)
    images = data.train_images[: args.rows].to(device)
    labels = data.train_labels[: args.rows].to(device)
    method = method_for(config, data.mean, device, image_side=min(images.shape[-2:]))
    candidates = method.candidates(images, generator=make_generator(config.seed, "bf16-candidates", device))
    picks = {}
    for name, dtype in (("fp32", None), ("bf16", torch.bfloat16)):
        scorer = dataclasses.replace(method, autocast_dtype=dtype)
        picks[name] = scorer.select(model, candidates, labels, generator=make_generator(0, "bf16-select", device))
    full, half = picks["fp32"], picks["bf16"]
    tv = 0.5 * (full.probs - half.probs).abs().sum(dim=1)
    relative = ((half.scores - full.scores).abs() / full.scores.clamp_min(1e-12)).flatten()
    print(json.dumps({
        "rows": len(labels), "candidates": candidates.shape[1], "device": str(device),
        "fp32_mean_loss": round(float(full.scores.mean()), 4),
        "tv_mean": round(float(tv.mean()), 6), "tv_max": round(float(tv.max()), 6),
        "same_pick": round(float((full.index == half.index).float().mean()), 4),
        "same_argmax": round(float((full.probs.argmax(1) == half.probs.argmax(1)).float().mean()), 4),
        "score_relative_diff_median": float(relative.median()),
        "fallback_rows": {"fp32": full.fallback_rows, "bf16": half.fallback_rows},
    }))  # fmt: skip
    return 0


def helper_compare(argv: list[str]) -> int:
    """Print whether two run directories ended with the same weights and metrics, and by how much they differ."""
    import torch

    from lossaug.run.checkpoint import newest_valid_checkpoint

    first, second = (newest_valid_checkpoint(Path(p))[1]["model"] for p in argv)
    diffs = [
        float((a.double() - b.double()).abs().max()) if a.numel() else 0.0
        for a, b in zip(first.values(), second.values(), strict=True)
        if a.is_floating_point()
    ]
    exact = all(torch.equal(first[k], second[k]) for k in first)
    finals = [final(Path(p)) for p in argv]
    keys = ("test_error", "test_loss", "train_loss")
    metrics_equal = all(finals[0].get(k) == finals[1].get(k) for k in keys)
    print(json.dumps({"identical": exact and metrics_equal, "weights_equal": exact, "metrics_equal": metrics_equal,
                      "max_abs_weight_diff": max(diffs, default=0.0),
                      **{k: [f.get(k) for f in finals] for k in keys}}))  # fmt: skip
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    helpers = {
        "env": lambda rest: print(json.dumps(helper_env())) or 0,
        "deterministic-lossaug": helper_deterministic_lossaug,
        "train-api": helper_train_api,
        "ddp-worker": helper_ddp_worker,
        "nccl-sanity": lambda rest: helper_nccl_sanity(),
        "bf16-scoring": helper_bf16_scoring,
        "compare": helper_compare,
    }
    if argv and argv[0] in helpers:
        return helpers[argv[0]](argv[1:])
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="data/cifar10-jpeg.tar.xz", help="JPEG CIFAR-10 archive (or folder)")
    parser.add_argument("--results", default="runs/gpu-check", help="results folder (default %(default)s)")
    parser.add_argument("--cache-dir", default="data/cache", help="decoded-array cache (kept between calls)")
    parser.add_argument("--budget", type=float, default=BUDGET, help=f"seconds for all checks (default {BUDGET:g})")
    parser.add_argument("--only", help="comma-separated check names (default: all): " + ",".join(CHECKS))
    parser.add_argument("--rehearse", action="store_true", help="run the checks on the CPU at toy sizes")
    args = parser.parse_args(argv)
    unknown = set(args.only.split(",")) - set(CHECKS) if args.only else set()
    if unknown or args.budget <= 0:
        what = f"unknown checks {sorted(unknown)}; choose from {list(CHECKS)}" if unknown else "--budget must be > 0"
        print(f"gpu_check: {what}", file=sys.stderr)
        return 2
    return orchestrate(args)


if __name__ == "__main__":
    sys.exit(main())
