"""The commands that use a trained run (``lossaug predict``, ``evaluate``, ``export``): their options and what
each does (``lossaug.use`` holds the work). Part of the command line with ``cli``, ``cli.options`` and
``cli.commands``. Each ``cmd_*`` returns the exit status.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from lossaug.use import TrainedRun

__all__ = ["add_use_commands", "cmd_evaluate", "cmd_export", "cmd_predict"]


def add_use_commands(sub: argparse._SubParsersAction) -> None:
    """Add ``predict``, ``evaluate`` and ``export`` to the ``lossaug`` subcommands."""
    parser = sub.add_parser(
        "predict",
        help="predict the class of image or audio files with a trained run",
        description="Read each file (or every image or audio file under a folder) as the run's test data were read "
        "(same decoding, size, rate, clip length and normalisation) and print one line per file: path, class, "
        "probability. Unreadable files are named on stderr, one per line; the others are still predicted. Exit "
        "status 0 when every file was predicted, 1 when any could not be read, 2 for bad input.",
    )
    parser.add_argument("run_dir", metavar="RUN_DIR", help="a run directory (or one of its checkpoint files)")
    parser.add_argument("paths", nargs="+", metavar="PATH", help="image or WAV files, or folders of them")
    parser.add_argument("--top", type=int, default=1, metavar="K", help="print the K most probable classes (default 1)")
    parser.add_argument("--json", action="store_true", help="print one JSON document instead of lines")
    parser.add_argument(
        "--trust-code",
        metavar="MODULE",
        help="import and run MODULE, the Python module of a run "
        "trained with --model MODULE:FACTORY (never imported without it)",
    )
    parser.set_defaults(func=cmd_predict)

    parser = sub.add_parser(
        "evaluate",
        help="test error, per-class errors and a confusion matrix of a trained run on new labelled data",
        description="Evaluate a run on data laid out like its training data: a folder or archive of "
        "test/<class>/<file> (or val/<class>/, or <class>/<file> at the top). Classes are matched to the run's by "
        "name (a class the run does not know is an error). Prints the error and each class's, and draws "
        "confusion.png into the run directory (or --out).",
    )
    parser.add_argument("run_dir", metavar="RUN_DIR", help="a run directory (or one of its checkpoint files)")
    parser.add_argument("--data", required=True, metavar="ROOT_OR_ARCHIVE", help="the labelled data to evaluate on")
    parser.add_argument("--out", help="confusion matrix figure, .png/.pdf/.svg (default: RUN_DIR/confusion.png)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON instead of a table")
    parser.add_argument(
        "--trust-code",
        metavar="MODULE",
        help="import and run MODULE, the Python module of a run "
        "trained with --model MODULE:FACTORY (never imported without it)",
    )
    parser.set_defaults(func=cmd_evaluate)

    parser = sub.add_parser(
        "export",
        help="write a trained run as a module that runs without lossaug (torch.export, TorchScript or ONNX) with a "
        "JSON of classes, inputs and preprocessing",
        description="Write the run's model as a module taking uint8 images (B,C,H,W) at the run's size, or int16 "
        "waveforms (B,C,T) at its rate and clip length, applying the run's normalisation or audio front end and "
        "returning logits; and FILE.json beside it with the class names, the inputs, the exact preprocessing that "
        "turns a file into them (as predict does it) and the run's provenance. The module is checked against the "
        "model on held-out inputs. Load it with torch.export.load(FILE).module() (--format export), "
        "torch.jit.load(FILE) (torchscript) or onnxruntime.InferenceSession(FILE) (onnx).",
    )
    parser.add_argument("run_dir", metavar="RUN_DIR", help="a run directory (or one of its checkpoint files)")
    parser.add_argument("--out", required=True, metavar="FILE", help="the module file to write, e.g. model.pt2")
    parser.add_argument(
        "--format",
        choices=["export", "torchscript", "onnx"],
        help="export: torch.export, a .pt2 file (default; a network it cannot capture is written as TorchScript, "
        "with a notice); torchscript: torch.jit (also takes float waveforms in [-1, 1]; deprecated upstream); onnx: "
        "needs pip install 'lossaug[onnx]'",
    )
    parser.add_argument(
        "--trust-code",
        metavar="MODULE",
        help="import and run MODULE, the Python module of a run "
        "trained with --model MODULE:FACTORY (never imported without it)",
    )
    parser.set_defaults(func=cmd_export)


def _load(run_dir: str, trust_code: str | None) -> TrainedRun:
    """``load_trained(run_dir)``, saying in one line on stderr when it is the run's best-validation checkpoint."""
    from lossaug.run.validation import BEST
    from lossaug.use import load_trained

    run = load_trained(run_dir, trust_code=trust_code)
    if run.checkpoint.name == BEST and Path(run_dir).is_dir():
        last = run.run_dir / "checkpoint.pt"
        note = f"using {run.checkpoint} (--keep best: the best validation epoch); give {last} for the last epoch's"
        print(f"lossaug: {note}", file=sys.stderr)
    return run


def cmd_predict(args: argparse.Namespace) -> int:
    from lossaug.use import predict

    result = predict(_load(args.run_dir, args.trust_code), args.paths, top=args.top)
    for failure in result.failed:
        print(f"lossaug: {failure.reason}", file=sys.stderr)  # each names its file
    if args.json:
        failed = [{"path": f.path, "error": f.reason} for f in result.failed]
        print(json.dumps({"predictions": [p.to_json() for p in result.predictions], "failed": failed}, indent=2))
    else:
        for prediction in result.predictions:
            print("\t".join([prediction.path, *(f"{name}\t{p:.4f}" for name, p in prediction.top)]))
    return 1 if result.failed else 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from lossaug.plots import MatplotlibMissing, figure_path
    from lossaug.use import evaluate_run, plot_confusion

    run = _load(args.run_dir, args.trust_code)
    out = figure_path(Path(args.out), "confusion.png") if args.out else run.run_dir / "confusion.png"
    evaluation = evaluate_run(run, args.data)
    title = f"{run.config.model} ({run.run_dir.name}) on {args.data}"
    try:
        path: Path | None = plot_confusion(evaluation, out, title=title)
    except MatplotlibMissing as missing:  # the numbers still count
        print(f"lossaug: warning: {missing}; {out} not drawn", file=sys.stderr)
        path = None
    if args.json:
        print(json.dumps({**evaluation.to_json(), "confusion_png": path and str(path)}, indent=2))
        return 0
    width = max(len(name) for name in evaluation.classes)
    where = f"{evaluation.split}/" if evaluation.split else "class folders"
    print(f"test error {evaluation.error:.2%} on {evaluation.num_examples} examples ({args.data}, {where})")
    for name, error in evaluation.per_class.items():
        count = int(evaluation.counts[evaluation.classes.index(name)].sum())
        shown = "-" if error is None else f"{error:.2%}"
        print(f"  {name:<{width}}  {shown:>7}  ({count} examples)")
    if path is not None:
        print(f"wrote {path}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from lossaug.use import export_run

    exported = export_run(_load(args.run_dir, args.trust_code), args.out, format=args.format)
    inputs, load = exported.metadata["takes"], exported.metadata["load"].replace("FILE", repr(str(exported.path)))
    print(
        f"wrote {exported.path} ({exported.format}: takes {inputs}; returns logits; load with {load}) and "
        f"{exported.metadata_path} (classes, inputs, preprocessing, provenance)"
    )
    return 0
