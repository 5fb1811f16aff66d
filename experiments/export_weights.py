"""Write the bare network's weights of a lossaug run as a plain ``state_dict`` file (what ``--init`` reads, a
few MB at most: no optimizer, no random state, no normalisation statistics of the old data).

    PYTHONPATH=src python experiments/export_weights.py RUN_DIR OUT.pt [--drop linear.]

``--drop PREFIX`` leaves out the tensors whose names start with PREFIX (e.g. the classifier head ``linear.``, so
that a fine-tuning run starts its head fresh even when the class count is unchanged; ``--init`` lists it as "not
in the file").
"""

import argparse
import sys
from pathlib import Path

import torch

from lossaug.run.checkpoint import CheckpointError, newest_valid_checkpoint

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("run_dir", type=Path, help="a lossaug run directory")
parser.add_argument("out", type=Path, help="the state_dict file to write")
parser.add_argument("--drop", action="append", default=[], metavar="PREFIX", help="leave out tensors named PREFIX...")
args = parser.parse_args()
try:
    path, payload = newest_valid_checkpoint(args.run_dir, keys=("model",))
except CheckpointError as error:
    sys.exit(f"export_weights: {error}")
weights = {k[len("net.") :]: v for k, v in payload["model"].items() if k.startswith("net.")}
dropped = [k for k in weights if any(k.startswith(prefix) for prefix in args.drop)]
weights = {k: v for k, v in weights.items() if k not in dropped}
args.out.parent.mkdir(parents=True, exist_ok=True)
torch.save(weights, args.out)
size = sum(v.numel() * v.element_size() for v in weights.values())
print(f"wrote {args.out}: {len(weights)} tensors, {size / 1e6:.2f} MB, from {path} (global step "
      f"{payload['global_step']}, {payload['config']['model']} width {payload['config']['width']})"
      + (f"; left out {', '.join(dropped)}" if dropped else ""))  # fmt: skip
