"""Fine-tune a pre-trained network on your own small image folder, with and without loss-aware selection.

    python examples/transfer.py --data my_images/ --init weights.pt --model my_nets:build --seeds 0,1,2,3,4
    python examples/transfer.py --epochs 2 --seeds 0          # no data of your own: a self-contained run

``my_images/`` holds ``train/<class>/*.jpg`` and ``test/<class>/*.jpg`` (or is an archive of that). ``--init`` is
a lossaug run directory, a lossaug checkpoint or a plain ``state_dict`` file; tensors whose shapes differ from the
model (the classifier head, when the number of classes changed) keep their fresh initialisation and are listed.
``--model`` is a built-in network or your own factory ``PACKAGE.MODULE:FUNCTION`` (called with ``num_classes=``
and, if it accepts them, ``in_channels=`` and ``width=``), imported from the current directory.

For each seed the baseline fine-tunes to half its steps, then three arms continue from there: the baseline,
loss-aware selection (M candidates) and the baseline given the selection's extra compute (``--cost-ratio``, or
measured once by ``lossaug bench``). The table gives the paired differences with 95% intervals and a verdict.
The same from the shell: ``lossaug compare --dataset folder --data my_images/ --init weights.pt ...``.

Without ``--data`` and ``--init`` the script first pre-trains on five classes of the bundled mini CIFAR-10 and
fine-tunes on 100 images of the other five, so it runs anywhere (a few minutes with the defaults on 2 CPU cores).
"""

import argparse
from pathlib import Path

from lossaug.compare import CompareConfig, run_compare, summary_markdown
from lossaug.progress import ConsoleReporter
from lossaug.run.config import TrainConfig
from lossaug.run.train import train

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--data", help="your image folder or archive (default: mini CIFAR-10, five classes)")
parser.add_argument("--init", help="pre-trained weights (default: pre-train on five mini CIFAR-10 classes first)")
parser.add_argument("--model", default="preact_resnet18", help="built-in network or PACKAGE.MODULE:FUNCTION")
parser.add_argument("--width", type=int, default=8, help="network width, if the model takes one (default: 8)")
parser.add_argument("--classes", help="comma-separated classes of --data to use (default: all)")
parser.add_argument("--epochs", type=int, default=20, help="fine-tuning epochs (default: 20)")
parser.add_argument("--lr", type=float, default=0.02, help="learning rate of the new head (default: 0.02)")
parser.add_argument("--backbone-lr-scale", type=float, default=0.1, help="lr factor of loaded tensors (0.1)")
parser.add_argument("--seeds", default="0,1,2", help="comma-separated seeds, one paired comparison each")
parser.add_argument("--cost-ratio", type=float, help="cost of a selecting step in baseline steps (default: bench)")
parser.add_argument("--out", default="runs/transfer", help="output directory (default: runs/transfer)")
args = parser.parse_args()

if args.data is not None and args.init is None:
    parser.error("--data needs --init: the pre-trained weights to fine-tune from")
reporter = ConsoleReporter()
out = Path(args.out)
width = args.width if ":" not in args.model else None
init, data, dataset, classes, train_size = args.init, args.data, "folder", args.classes, None
if data is None:
    dataset, classes, train_size = "mini", "dog,frog,horse,ship,truck", 100
if init is None:  # no weights of your own: pre-train on the other five classes
    source = TrainConfig(dataset="mini", classes="airplane,automobile,bird,cat,deer", model=args.model, width=width,
                         epochs=max(2, args.epochs), batch_size=64, lr=0.05, method="baseline",
                         out=str(out / "pretrain"))  # fmt: skip
    print(f"== pre-training {args.model} on mini CIFAR-10 {source.classes}")
    init = str(train(source, reporter=reporter, resume=(out / "pretrain" / "checkpoint.pt").exists()).out_dir)

base = TrainConfig(
    dataset=dataset, data=data, classes=classes, train_size=train_size, model=args.model, width=width,
    init=init, backbone_lr_scale=args.backbone_lr_scale, epochs=args.epochs, batch_size=32, lr=args.lr,
    num_candidates=4, eval_every=args.epochs,
)  # fmt: skip
config = CompareConfig(
    base=base, out=str(out / "compare"), arms=("baseline", "proposed", "baseline-equal-time"), settings=("A",),
    seeds=tuple(int(s) for s in args.seeds.split(",")), branch_at=0.5, cost_ratio=args.cost_ratio,
)  # fmt: skip
summary = run_compare(config, reporter=reporter)
print(summary_markdown(summary))
print(f"fine-tuned from {init}; runs, summary.md and forest.png in {config.out}")
