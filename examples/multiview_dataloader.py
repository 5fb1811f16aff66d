"""Per-image augmentation pipelines (PIL, torchvision, albumentations) in DataLoader workers, with MultiView.

    python examples/multiview_dataloader.py --steps 100 --workers 2

When the augmentation is a per-image transform rather than a batched tensor function, make the M candidates where
such transforms usually run: in the DataLoader workers. ``MultiView`` wraps a dataset of ``(image, target)`` and
returns ``(views (M,C,H,W), target)``; the loader yields ``candidates (B,M,C,H,W)`` and
``lossaug.select_candidates`` picks one per image. Draws are seeded from (seed, epoch, index, view), so they are the
same whatever the number of workers and never repeat across epochs.
"""

import argparse
import random

import torch
import torch.nn.functional as F
from PIL import Image, ImageOps
from torch.utils.data import DataLoader, Dataset

import lossaug
from lossaug.data import MultiView, load_mini_cifar10
from lossaug.models import Normalized, SmallCNN
from lossaug.seeds import stream_seed


class PadCropFlip:
    """Pad 4 pixels, crop 32x32 at random, mirror half the time: PIL in, PIL out, randomness from ``random``
    (MultiView seeds it per draw). With torchvision installed, ``transforms.v2.Compose([RandomCrop(32,
    padding=4), RandomHorizontalFlip()])`` is a drop-in replacement."""

    def __call__(self, image: Image.Image) -> Image.Image:
        padded = ImageOps.expand(image, border=4, fill=0)
        left, top = random.randint(0, 8), random.randint(0, 8)
        crop = padded.crop((left, top, left + 32, top + 32))
        return crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT) if random.random() < 0.5 else crop


class PilImages(Dataset):
    """Mini CIFAR-10 as ``(PIL image, label)`` pairs, like an image-folder dataset."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor):
        self.images, self.labels = images, labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[Image.Image, int]:
        return Image.fromarray(self.images[index].permute(1, 2, 0).numpy()), int(self.labels[index])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100, help="training steps (default: 100)")
    parser.add_argument("--batch-size", type=int, default=64, help="images per step (default: 64)")
    parser.add_argument("--candidates", type=int, default=4, help="M, candidates per image (default: 4)")
    parser.add_argument("--workers", type=int, default=2, help="DataLoader worker processes (default: 2)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    data = load_mini_cifar10()
    dataset = MultiView(PilImages(data.train.images, data.train.labels), PadCropFlip(), args.candidates, seed=args.seed)
    loader = DataLoader(
        dataset,
        batch_size=args.batch_size,
        shuffle=True,
        num_workers=args.workers,
        drop_last=True,
        generator=torch.Generator().manual_seed(args.seed),
    )
    with torch.random.fork_rng(devices=[]):  # model init draws from torch's global generator: seed it locally
        torch.manual_seed(args.seed)
        model = Normalized(SmallCNN(num_classes=10, width=8), mean=(0.49, 0.48, 0.45), std=(0.25, 0.24, 0.26))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True)
    select_gen = torch.Generator().manual_seed(stream_seed(args.seed, "select"))

    step, epoch = 0, 0
    while step < args.steps:
        dataset.set_epoch(epoch)  # new draws each epoch, as DistributedSampler.set_epoch gives a new order
        for candidates, targets in loader:  # candidates (B,M,3,32,32) uint8
            selection = lossaug.select_candidates(model, candidates, targets, generator=select_gen)
            loss = F.cross_entropy(model(selection.inputs), targets)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            step += 1
            if step % 10 == 0 or step == args.steps:
                print(f"epoch {epoch} step {step}: loss {loss.item():.3f}, candidates {tuple(candidates.shape)}")
            if step == args.steps:
                break
        epoch += 1


if __name__ == "__main__":  # workers may import this file (spawn start method): train only when run
    main()
