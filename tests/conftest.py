"""Test-session settings. Under pytest-xdist (the README's ``-n 2``) each worker uses one intra-op thread, and the
processes the tests start inherit ``OMP_NUM_THREADS=1``: two workers of two threads each on a 2-core machine would
oversubscribe it."""

import os

import pytest

if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import torch

    torch.set_num_threads(1)


@pytest.fixture
def resume_after_crash():
    """``run(config, at_step, before_resume=None)``: train ``config`` until a KeyboardInterrupt at global step
    ``at_step`` (its last checkpoint kept), call ``before_resume``, resume it and return the resumed run's result."""
    from lossaug.run.train import train

    def run(config, at_step: int, before_resume=None):
        def crash(step, _selection):
            if step == at_step:
                raise KeyboardInterrupt

        with pytest.raises(KeyboardInterrupt):
            train(config, on_step=crash)
        if before_resume is not None:
            before_resume()
        return train(config, resume=True)

    return run
