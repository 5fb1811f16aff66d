"""Test-session settings. Under pytest-xdist (the README's ``-n 2``) each worker uses one intra-op thread, and the
processes the tests start inherit ``OMP_NUM_THREADS=1``: two workers of two threads each on a 2-core machine would
oversubscribe it."""

import os

if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import torch

    torch.set_num_threads(1)
