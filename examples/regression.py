"""Loss-aware selection beyond images: a regression task with a custom ``loss_fn`` and jittered inputs.

    python examples/regression.py --steps 500
    python examples/regression.py --steps 500 --temperature inf   # the baseline: one random jitter

The candidates are noisy versions of each input vector (Gaussian jitter, a common input augmentation for tabular
and sensor data); the model's per-sample squared error scores them, and training uses one per sample, drawn in
proportion to that error.
"""

import argparse

import torch
from torch import nn

import lossaug

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--steps", type=int, default=500, help="training steps (default: 500)")
parser.add_argument("--batch-size", type=int, default=64, help="samples per step (default: 64)")
parser.add_argument("--candidates", type=int, default=4, help="M, candidates per sample (default: 4)")
parser.add_argument("--temperature", type=float, default=1.0, help="1: by error; inf: uniform (default: 1)")
parser.add_argument("--noise", type=float, default=0.1, help="jitter standard deviation (default: 0.1)")
parser.add_argument("--seed", type=int, default=0)
args = parser.parse_args()

# Synthetic data: y = sin(x . w) + small noise, x in R^8.
data_gen = torch.Generator().manual_seed(args.seed)
weights = torch.randn(8, 1, generator=data_gen) / 8**0.5  # x . w has unit variance
train_x = torch.randn(2048, 8, generator=data_gen)
test_x = torch.randn(512, 8, generator=data_gen)
train_y = torch.sin(train_x @ weights) + 0.05 * torch.randn(2048, 1, generator=data_gen)
test_y = torch.sin(test_x @ weights)


def jitter(inputs: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """Candidates: ``inputs (N,8)`` plus Gaussian noise, one independent draw per row."""
    return inputs + args.noise * torch.randn(inputs.shape, generator=generator, device=inputs.device)


def squared_error(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Per-sample loss ``(N,)``: the score of each candidate (must be >= 0)."""
    return (outputs - targets).pow(2).sum(dim=1)


with torch.random.fork_rng(devices=[]):  # model init draws from torch's global generator: seed it locally
    torch.manual_seed(args.seed)
    model = nn.Sequential(nn.Linear(8, 64), nn.Tanh(), nn.Linear(64, 1))
optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
la = lossaug.LossAwareAugment(
    jitter, num_candidates=args.candidates, temperature=args.temperature, loss_fn=squared_error
)
augment_gen = torch.Generator().manual_seed(args.seed + 1)
order_gen = torch.Generator().manual_seed(args.seed + 2)

for step in range(1, args.steps + 1):
    index = torch.randint(0, len(train_x), (args.batch_size,), generator=order_gen)
    selection = la(model, train_x[index], train_y[index], generator=augment_gen)
    loss = squared_error(model(selection.inputs), train_y[index]).mean()
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    if step % 100 == 0 or step == args.steps:
        with torch.no_grad():
            test_mse = squared_error(model(test_x), test_y).mean()
        print(f"step {step}: train loss {loss.item():.4f}, test mse {test_mse:.4f}")
