"""Contract, oracle and statistics tests for the batched augmentations."""

import pytest
import torch
import torch.nn.functional as F

from lossaug import augment as A
from lossaug.errors import InputError


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


AUGMENTS = {
    "flip": lambda x, g: A.horizontal_flip(x, generator=g),
    "crop": lambda x, g: A.random_crop(x, 4, generator=g),
    "crop_fill": lambda x, g: A.random_crop(x, 3, fill=(10, 20, 30), generator=g),
    "cutout": lambda x, g: A.cutout(x, 8, generator=g),
    "setting_A": A.parse_augment("flip,crop"),
    "setting_B": A.parse_augment("flip,crop,cutout:8"),
}


def random_images(batch: int, dtype: torch.dtype, seed: int = 0) -> torch.Tensor:
    images = torch.randint(0, 256, (batch, 3, 16, 16), generator=gen(seed), dtype=torch.uint8)
    return images if dtype == torch.uint8 else images.to(dtype) / 255


@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32])
@pytest.mark.parametrize("name", AUGMENTS)
class TestContract:
    def test_shape_and_dtype_kept(self, name, dtype):
        images = random_images(8, dtype)
        out = AUGMENTS[name](images, gen(1))
        assert out.shape == images.shape and out.dtype == dtype

    def test_same_seed_same_output_different_seed_differs(self, name, dtype):
        images = random_images(32, dtype)
        first, again = AUGMENTS[name](images, gen(1)), AUGMENTS[name](images, gen(1))
        assert torch.equal(first, again)
        assert not torch.equal(first, AUGMENTS[name](images, gen(2)))

    def test_empty_batch(self, name, dtype):
        images = random_images(0, dtype)
        assert AUGMENTS[name](images, gen(1)).shape == (0, 3, 16, 16)

    def test_each_image_draws_its_own_parameters(self, name, dtype):
        images = random_images(1, dtype).expand(64, -1, -1, -1).contiguous()
        out = AUGMENTS[name](images, gen(3))
        distinct = {tuple(row.flatten().tolist()) for row in out}
        assert len(distinct) > 1, "every image got the same augmentation: one draw for the batch"

    def test_input_not_modified(self, name, dtype):
        images = random_images(8, dtype)
        before = images.clone()
        AUGMENTS[name](images, gen(1))
        assert torch.equal(images, before)


# ---------------------------------------------------------------- oracles: batched == per-image loop


def test_crop_matches_per_image_pad_and_slice():
    images = random_images(20, torch.uint8)
    top, left = A.crop_params(20, 4, device=images.device, generator=gen(5))
    batched = A.apply_crop(images, top, left, 4, fill=(7, 8, 9))
    for b in range(20):
        padded = F.pad(images[b].float(), (4, 4, 4, 4))
        for c, value in enumerate((7, 8, 9)):
            border = torch.ones(16, 16)
            border = F.pad(border, (4, 4, 4, 4)) == 0
            padded[c][border] = value
        expected = padded[:, top[b] : top[b] + 16, left[b] : left[b] + 16].to(torch.uint8)
        assert torch.equal(batched[b], expected), b


def test_flip_matches_per_image_loop():
    images = random_images(20, torch.float32)
    flip = A.flip_params(20, 0.5, device=images.device, generator=gen(5))
    batched = A.apply_flip(images, flip)
    for b in range(20):
        assert torch.equal(batched[b], images[b].flip(-1) if flip[b] else images[b])


def test_cutout_matches_per_image_loop():
    images = random_images(40, torch.float32)
    cy, cx = A.cutout_params(40, 16, 16, device=images.device, generator=gen(5))
    batched = A.apply_cutout(images, cy, cx, 6, fill=0.5)
    for b in range(40):
        expected = images[b].clone()
        y0, x0 = int(cy[b]) - 3, int(cx[b]) - 3
        expected[:, max(y0, 0) : max(y0 + 6, 0), max(x0, 0) : max(x0 + 6, 0)] = 0.5
        assert torch.equal(batched[b], expected), b


def test_cutout_square_is_size_squared_inside_and_clipped_at_border():
    images = torch.ones(2, 1, 32, 32)
    out = A.apply_cutout(images, torch.tensor([16, 0]), torch.tensor([16, 31]), 16)
    assert int((out[0] == 0).sum()) == 16 * 16
    assert int((out[1] == 0).sum()) == 8 * 9  # rows [-8, 8) -> 8, columns [23, 39) -> 9


def test_crop_with_zero_padding_is_identity():
    images = random_images(4, torch.uint8)
    assert torch.equal(A.random_crop(images, 0, generator=gen(0)), images)


# ---------------------------------------------------------------- statistics of the parameters


def chi_square(counts: torch.Tensor, expected: torch.Tensor) -> float:
    return float(((counts - expected) ** 2 / expected).sum())


def test_crop_offsets_are_uniform():
    top, left = A.crop_params(45_000, 4, device=torch.device("cpu"), generator=gen(0))
    for offsets in (top, left):
        counts = torch.bincount(offsets, minlength=9).float()
        assert counts.numel() == 9
        assert chi_square(counts, torch.full((9,), 5000.0)) < 26.1  # df=8, p=0.001


def test_flip_frequency_matches_p():
    flip = A.flip_params(40_000, 0.3, device=torch.device("cpu"), generator=gen(0))
    # binomial sd = sqrt(40000 * .3 * .7) ~ 92; 5 sd bound
    assert abs(int(flip.sum()) - 12_000) < 460


def test_cutout_centres_are_uniform_over_pixels():
    cy, cx = A.cutout_params(32_000, 8, 4, device=torch.device("cpu"), generator=gen(0))
    counts = torch.bincount(cy * 4 + cx, minlength=32).float()
    assert chi_square(counts, torch.full((32,), 1000.0)) < 61.1  # df=31, p=0.001


# ---------------------------------------------------------------- composition and foreign callables


def test_parse_augment_settings():
    assert A.parse_augment("flip,crop").augments == (A.HorizontalFlip(0.5), A.RandomCrop(4))
    assert A.parse_augment("flip, crop:2, cutout:8").augments == (A.HorizontalFlip(0.5), A.RandomCrop(2), A.Cutout(8))
    assert A.parse_augment("").augments == ()


@pytest.mark.parametrize("spec,match", [("flip,rotate", "unknown augmentation 'rotate'"), ("crop:x", "'x'")])
def test_parse_augment_errors_name_the_culprit(spec, match):
    with pytest.raises(ValueError, match=match):
        A.parse_augment(spec)


@pytest.mark.parametrize(
    "call,match",
    [
        (lambda x: A.random_crop(x, -1), "padding"),
        (lambda x: A.cutout(x, -2), "size"),
        (lambda x: A.horizontal_flip(x, 1.5), "p must be"),
        (lambda x: A.random_crop(x[0], 4), r"\(B,C,H,W\)"),
        (lambda x: A.random_crop(x, 2, fill=(1, 2)), "2 values but images have 3 channels"),
    ],
)
def test_bad_arguments_raise_value_error(call, match):
    with pytest.raises(ValueError, match=match):
        call(random_images(2, torch.float32))


@pytest.mark.parametrize(
    "build,call",
    [
        (lambda: A.Cutout(0), lambda x: A.cutout(x, 0)),  # the functional path once took size 0; Cutout never did
        (lambda: A.Cutout(-2), lambda x: A.cutout(x, -2)),
        (lambda: A.RandomCrop(-1), lambda x: A.random_crop(x, -1)),
        (lambda: A.HorizontalFlip(1.5), lambda x: A.horizontal_flip(x, 1.5)),
        (lambda: A.Mixup(0.0), lambda x: A.mixup(x, torch.ones(len(x), 2) / 2, 0.0)),
        (lambda: A.CutMix(float("nan")), lambda x: A.cutmix(x, torch.ones(len(x), 2) / 2, float("nan"))),
    ],
)
def test_the_class_and_the_functional_path_refuse_the_same_values(build, call):
    with pytest.raises(InputError) as refused_by_class:
        build()
    with pytest.raises(InputError) as refused_by_function:
        call(random_images(2, torch.float32))
    assert str(refused_by_function.value) == str(refused_by_class.value)


def test_one_argument_callable_is_reproducible_and_leaves_global_rng_alone():
    def noisy(images):  # draws from torch's global generator, like kornia does
        return images + torch.rand(images.shape)

    images = torch.zeros(4, 3, 8, 8)
    state = torch.get_rng_state()
    first = A.Compose((noisy,))(images, gen(1))
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(first, A.Compose((noisy,))(images, gen(1)))
    assert not torch.equal(first, A.Compose((noisy,))(images, gen(2)))


def test_kornia_pipeline_is_an_augmentation():
    kornia = pytest.importorskip("kornia")
    pipeline = kornia.augmentation.AugmentationSequential(
        kornia.augmentation.RandomHorizontalFlip(), kornia.augmentation.RandomCrop((16, 16), padding=4)
    )
    images = random_images(8, torch.float32)
    out = A.Compose((pipeline, A.Cutout(4)))(images, gen(1))
    assert out.shape == images.shape
    assert torch.equal(out, A.Compose((pipeline, A.Cutout(4)))(images, gen(1)))
