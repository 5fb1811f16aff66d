"""Loss-aware augmentation in Lightning: add one callback to the Trainer, keep the LightningModule as it is.

    pip install lightning
    python examples/lightning_example.py --steps 200

``LossAwareSelection`` runs after Lightning has moved each training batch to the device: it makes M candidates
of the inputs, scores them with the module's ``forward`` (no gradient, module state untouched) and puts the chosen
candidates into the batch that ``training_step`` receives. It logs ``selection_entropy`` (``log M`` is uniform).
"""

import argparse
import math

import lightning as L
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

import lossaug
from lossaug.data import load_mini_cifar10
from lossaug.lightning import LossAwareSelection
from lossaug.models import Normalized, SmallCNN

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--steps", type=int, default=200, help="training steps (default: 200)")
parser.add_argument("--batch-size", type=int, default=64, help="images per step (default: 64)")
parser.add_argument("--candidates", type=int, default=4, help="M, candidates per image (default: 4)")
parser.add_argument("--seed", type=int, default=0)
args = parser.parse_args()


class Classifier(L.LightningModule):
    """A plain LightningModule: nothing in it knows about candidate selection."""

    def __init__(self):
        super().__init__()
        self.model = Normalized(SmallCNN(num_classes=10, width=8), mean=(0.49, 0.48, 0.45), std=(0.25, 0.24, 0.26))

    def forward(self, images: torch.Tensor) -> torch.Tensor:  # the callback scores candidates with this
        return self.model(images)

    def training_step(self, batch, batch_idx):
        images, labels = batch  # images are already the selected candidates here
        loss = F.cross_entropy(self(images), labels)
        self.log("train_loss", loss, prog_bar=True)
        return loss

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.05, momentum=0.9, nesterov=True)


data = load_mini_cifar10()
loader = DataLoader(
    TensorDataset(data.train.images, data.train.labels),  # uint8 (N,3,32,32); default_collate gives a list
    batch_size=args.batch_size,
    shuffle=True,
    generator=torch.Generator().manual_seed(args.seed),
)
with torch.random.fork_rng(devices=[]):  # model init draws from torch's global generator: seed it locally
    torch.manual_seed(args.seed)
    module = Classifier()

selection = LossAwareSelection(lossaug.LossAwareAugment("flip,crop", num_candidates=args.candidates), seed=args.seed)
trainer = L.Trainer(
    max_steps=args.steps,
    callbacks=[selection],
    logger=False,
    enable_checkpointing=False,
    enable_progress_bar=False,
    enable_model_summary=False,
)
trainer.fit(module, loader)
entropy = float(trainer.callback_metrics["selection_entropy"])
print(
    f"trained {selection.steps} steps with {args.candidates} candidates per image: last loss "
    f"{float(trainer.callback_metrics['train_loss']):.3f}, selection entropy {entropy:.3f} nats "
    f"(uniform: {math.log(args.candidates):.3f})"
)
