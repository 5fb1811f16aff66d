"""Issue 32, audio in the Python API: one spec language for images and audio, ``LossAwareAugment`` on ``(B,T)``
waveforms, ``load_dataset("audio-folder", path, sample_rate=, clip_seconds=)``, and README's audio example run."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch

import lossaug
from lossaug.augment import Compose, parse_augment
from lossaug.data import load_dataset
from lossaug.errors import InputError

README = Path(__file__).resolve().parent.parent / "README.md"


def write_clips(root: Path, classes: int = 2, per_class: int = 10, rate: int = 22050) -> Path:
    rng = np.random.default_rng(0)
    for c in range(classes):
        (root / f"c{c}").mkdir(parents=True)
        for i in range(per_class):
            t = np.arange(rate // 10) / rate
            tone = 0.3 * np.sin(2 * np.pi * (300 + 400 * c) * t) + 0.01 * rng.standard_normal(len(t))
            soundfile.write(root / f"c{c}" / f"{i}.wav", tone, rate, subtype="PCM_24")
    return root


def test_audio_spec_works_on_b_t_waveforms_like_b_c_t():
    la = lossaug.LossAwareAugment("shift,gain,noise", num_candidates=3, sample_rate=16000)
    model = torch.nn.Sequential(torch.nn.Linear(800, 3))
    waveforms = (torch.randn(4, 800) * 3000).to(torch.int16)
    targets = torch.tensor([0, 1, 2, 0])
    selection = la(model, waveforms.float() / 32768, targets, generator=torch.Generator().manual_seed(0))
    assert selection.inputs.shape == (4, 800) and selection.probs.shape == (4, 3)
    augment = parse_augment("shift,gain,noise", sample_rate=16000)
    flat = augment(waveforms, torch.Generator().manual_seed(1))
    channelled = augment(waveforms.unsqueeze(1), torch.Generator().manual_seed(1))
    assert flat.dtype == torch.int16 and torch.equal(flat, channelled.squeeze(1))


def test_one_spec_language_and_its_errors():
    assert isinstance(parse_augment("flip,crop"), Compose)  # images as before
    assert not isinstance(parse_augment("shift,gain"), Compose)  # audio named by its ops alone
    with pytest.raises(InputError, match=r"unknown augmentation 'blur'.*image ops: .*'flip'.*audio ops: .*'shift'"):
        lossaug.LossAwareAugment("shift,blur")
    with pytest.raises(InputError, match=r"mixes image ops \['flip'\] with audio ops \['shift'\]"):
        parse_augment("flip,shift")
    with pytest.raises(InputError, match="mixes image ops"):
        lossaug.LossAwareAugment("flip,crop", sample_rate=16000)


def test_one_table_of_ops_each_row_naming_the_kinds_it_fits():
    from lossaug.augment import AUGMENTATIONS
    from lossaug.augment.audio import AUDIO_AUGMENTATIONS
    from lossaug.augment.spec import parse_ops
    from lossaug.augment.table import OPS
    from lossaug.kinds import KINDS

    assert all(row.kinds and set(row.kinds) <= set(KINDS) for row in OPS.values())
    assert set(AUGMENTATIONS) | set(AUDIO_AUGMENTATIONS) == set(OPS)
    assert set(AUGMENTATIONS) & set(AUDIO_AUGMENTATIONS) == {"mixup"}  # clips are mixed as images are
    assert AUDIO_AUGMENTATIONS["shift"] is OPS["shift"] and "shift" not in AUGMENTATIONS
    with pytest.raises(InputError, match=r"unknown augmentation 'shift' in 'shift'; choose from \['crop'"):
        parse_ops("shift", "image")  # the kind decides which rows a spec may use


def test_load_dataset_audio_keywords(tmp_path):
    root = write_clips(tmp_path / "clips")
    data = load_dataset("audio-folder", root, sample_rate=16000, clip_seconds=1.0, test_fraction=0.2)
    assert data.sample_rate == 16000 and data.train.waveforms.shape == (16, 1, 16000)
    with pytest.raises(InputError, match="apply to audio data"):
        load_dataset("mini", sample_rate=16000)


def test_readme_audio_example_runs(tmp_path, monkeypatch):
    text = README.read_text()
    block = re.search(r"<!-- audio-example[^>]*-->\s*```python\n(.*?)```", text, re.S)
    assert block is not None, "README lost its audio example"
    write_clips(tmp_path / "my_clips")
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(block.group(1), "README audio example", "exec"), namespace)
    assert namespace["loss"].isfinite() and namespace["selection"].inputs.dim() == 2
