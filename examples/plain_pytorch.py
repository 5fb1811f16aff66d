"""Loss-aware augmentation in a plain PyTorch loop (the README's loop), on the bundled mini CIFAR-10.

    python examples/plain_pytorch.py --steps 200

Each step makes 4 flip + crop candidates per image, scores them with the model and trains on one per image,
sampled in proportion to its loss. Runs on the CPU in about a second per 10 steps with the defaults.
"""

import argparse

import torch
import torch.nn.functional as F

import lossaug
from lossaug.data import load_mini_cifar10
from lossaug.models import Normalized, SmallCNN

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--steps", type=int, default=200, help="training steps (default: 200)")
parser.add_argument("--batch-size", type=int, default=64, help="images per step (default: 64)")
parser.add_argument("--candidates", type=int, default=4, help="M, candidates per image (default: 4)")
parser.add_argument("--seed", type=int, default=0)
args = parser.parse_args()

data = load_mini_cifar10()  # uint8 images (N,3,32,32) and int64 labels (N,)
images, labels = data.train.images, data.train.labels
with torch.random.fork_rng(devices=[]):  # model init draws from torch's global generator: seed it locally
    torch.manual_seed(args.seed)
    model = Normalized(SmallCNN(num_classes=10, width=8), mean=(0.49, 0.48, 0.45), std=(0.25, 0.24, 0.26))
optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True)

la = lossaug.LossAwareAugment("flip,crop", num_candidates=args.candidates)  # setting A: flip + pad-4 crop
augment_gen = torch.Generator().manual_seed(args.seed)  # augmentation and selection draws
order_gen = torch.Generator().manual_seed(args.seed + 1)  # data order, a separate stream

for step in range(1, args.steps + 1):
    index = torch.randint(0, len(labels), (args.batch_size,), generator=order_gen)
    batch, targets = images[index], labels[index]
    selection = la(model, batch, targets, generator=augment_gen)  # scores M candidates per image, picks one
    loss = F.cross_entropy(model(selection.inputs), targets)  # train on the chosen candidates
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    if step % 10 == 0 or step == args.steps:
        chosen = selection.scores.gather(1, selection.index[:, None]).mean()
        print(f"step {step}: loss {loss.item():.3f}, chosen score {chosen:.3f} vs mean {selection.scores.mean():.3f}")

model.eval()
with torch.no_grad():
    test_error = (model(data.test.images).argmax(dim=1) != data.test.labels).float().mean()
print(f"test error after {args.steps} steps: {test_error:.1%}")
