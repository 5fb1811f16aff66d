"""A run that cannot fit is refused before it allocates (issue 11, item 6): one line naming the estimate."""

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from lossaug.augment import parse_augment
from lossaug.cli import main
from lossaug.run.memory import check_fits, step_bytes

TINY = ["train", "--dataset", "mini", "--model", "cnn", "--epochs", "1", "--device", "cpu"]


@pytest.mark.parametrize(
    "options, part",
    [
        (["--width", "60000"], "weights, gradients and momentum"),  # within the width limit, 65,536
        (["--candidates", "200000"], "candidates"),
        (["--augment", "crop:100000"], "padded crops"),
    ],
)
def test_absurd_sizes_are_refused_with_the_estimate(options, part, capsys, tmp_path):
    assert main([*TINY, *options, "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    line = [text for text in err.splitlines() if "error:" in text]
    assert len(line) == 1 and "a training step needs at least" in line[0] and part in line[0]
    assert "GiB available; lower --batch-size" in line[0] and "Traceback" not in err
    assert not (tmp_path / "run" / "checkpoint.pt").exists()


def test_absurd_image_size_is_refused_before_decoding(tmp_path, capsys):
    for split in ("train", "test"):
        (tmp_path / "d" / split / "a").mkdir(parents=True)
        Image.fromarray(np.zeros((4, 4, 3), dtype=np.uint8)).save(tmp_path / "d" / split / "a" / "0.png")
    argv = ["train", "--dataset", "folder", "--data", str(tmp_path / "d"), "--image-size", "10000000", "--epochs",
            "1", "--batch-size", "1", "--device", "cpu", "--out", str(tmp_path / "run")]  # fmt: skip
    assert main(argv) == 2
    assert "decoding 2 images at 10000000 px needs at least" in capsys.readouterr().err


def test_step_bytes_counts_parameters_candidates_and_crops():
    with torch.device("meta"):
        net = nn.Sequential(nn.Conv2d(3, 2, 1), nn.Flatten(), nn.Linear(2 * 8 * 8, 5))
    parts = step_bytes(net, (3, 8, 8), batch_size=4, num_candidates=3, augment=parse_augment("flip,crop:2"))
    parameters = (3 * 2 + 2) + (128 * 5 + 5)
    assert parts["weights, gradients and momentum"] == 12 * parameters
    assert parts["activations"] == 2 * 4 * (128 + 128 + 5) * 4  # conv, flatten and linear outputs, x B
    assert parts["candidates"] == 2 * 4 * 3 * 3 * 8 * 8
    assert parts["padded crops"] == 4 * 3 * 3 * 12 * 12


def test_check_fits_passes_what_fits():
    check_fits({"small": 1024}, torch.device("cpu"), "never shown")
    with pytest.raises(ValueError, match=r"needs at least 1024.0 GiB \(huge 1024.0 GiB\)"):
        check_fits({"huge": 2**40}, torch.device("cpu"), "buy more")
