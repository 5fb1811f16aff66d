"""A kornia AugmentationSequential as the augmentation that makes the candidates.

    python examples/kornia_pipeline.py --steps 200

Any one-argument transform works: lossaug calls it on the (B*M,C,H,W) batch of repeated images, inside
``torch.random.fork_rng`` seeded from your generator, so the candidates are reproducible and your global random
state is left alone. kornia works on float images in [0, 1], so the model normalises floats here.
"""

import argparse

import kornia.augmentation as K
import torch
import torch.nn.functional as F
from torch import nn

import lossaug
from lossaug.data import load_mini_cifar10
from lossaug.models import SmallCNN
from lossaug.seeds import stream_seed

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--steps", type=int, default=200, help="training steps (default: 200)")
parser.add_argument("--batch-size", type=int, default=64, help="images per step (default: 64)")
parser.add_argument("--candidates", type=int, default=4, help="M, candidates per image (default: 4)")
parser.add_argument("--seed", type=int, default=0)
args = parser.parse_args()

pipeline = K.AugmentationSequential(
    K.RandomHorizontalFlip(),
    K.RandomCrop((32, 32), padding=4),
    K.ColorJitter(brightness=0.2, contrast=0.2, saturation=0.2, p=0.8),
    K.RandomErasing(scale=(0.02, 0.1), p=0.5),
)


class Standardize(nn.Module):
    """Per-channel normalisation of float images in [0, 1]."""

    def __init__(self, mean: tuple[float, ...], std: tuple[float, ...]):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return (images - self.mean) / self.std


data = load_mini_cifar10()
images, labels = data.train.images.float() / 255, data.train.labels  # (N,3,32,32) float in [0, 1]
with torch.random.fork_rng(devices=[]):  # model init draws from torch's global generator: seed it locally
    torch.manual_seed(args.seed)
    model = nn.Sequential(Standardize((0.49, 0.48, 0.45), (0.25, 0.24, 0.26)), SmallCNN(num_classes=10, width=8))
optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True)

la = lossaug.LossAwareAugment(pipeline, num_candidates=args.candidates)
augment_gen = torch.Generator().manual_seed(stream_seed(args.seed, "augment"))  # named streams: never collide
order_gen = torch.Generator().manual_seed(stream_seed(args.seed, "order"))

for step in range(1, args.steps + 1):
    index = torch.randint(0, len(labels), (args.batch_size,), generator=order_gen)
    selection = la(model, images[index], labels[index], generator=augment_gen)
    loss = F.cross_entropy(model(selection.inputs), labels[index])
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    if step % 10 == 0 or step == args.steps:
        print(f"step {step}: loss {loss.item():.3f}, mean candidate score {selection.scores.mean():.3f}")
