"""Setting C's TrivialAugment-style space: contract, each op against its oracle (PIL for the colour ops, kornia for
the geometric ones), batched == per-image, the draws, and the setting wired into the spec and the method."""

import numpy as np
import pytest
import torch

from lossaug import augment as A
from lossaug.augment.trivial import _apply_op
from lossaug.errors import InputError


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def images_for_oracle() -> torch.Tensor:
    images = torch.randint(0, 256, (6, 3, 12, 10), generator=gen(0), dtype=torch.uint8)
    images[1] = images[1] // 4 + 60  # a narrow range: autocontrast and equalize have work to do
    images[2, :, :, :] = images[2, :1]  # grey: colour does nothing
    return images


# ---------------------------------------------------------------- contract


class TestContract:
    def test_shape_dtype_seed_and_empty_batch(self):
        images = torch.randint(0, 256, (32, 3, 16, 16), generator=gen(1), dtype=torch.uint8)
        first = A.trivial_augment(images, generator=gen(1))
        assert first.shape == images.shape and first.dtype == torch.uint8
        assert torch.equal(first, A.trivial_augment(images, generator=gen(1)))
        assert not torch.equal(first, A.trivial_augment(images, generator=gen(2)))
        assert A.trivial_augment(images[:0], generator=gen(1)).shape == (0, 3, 16, 16)

    def test_each_image_draws_its_own_op_and_the_input_is_kept(self):
        images = torch.randint(0, 256, (1, 3, 16, 16), generator=gen(1), dtype=torch.uint8).expand(64, -1, -1, -1)
        images = images.contiguous()
        before = images.clone()
        out = A.TrivialAugment()(images, gen(3))
        assert len({tuple(row.flatten().tolist()) for row in out}) > 8
        assert torch.equal(images, before)

    def test_float_images_are_refused_in_one_line(self):
        with pytest.raises(InputError, match="uint8"):
            A.trivial_augment(torch.rand(2, 3, 8, 8), generator=gen(0))


# ---------------------------------------------------------------- oracles


def _pil(image: torch.Tensor):
    from PIL import Image

    return Image.fromarray(image.permute(1, 2, 0).numpy())


def _tensor(picture) -> torch.Tensor:
    return torch.from_numpy(np.asarray(picture).copy()).permute(2, 0, 1)


FACTORS = torch.tensor([0.1, 0.5, 0.95, 1.3, 1.77, 1.9])


def _enhance(name):
    from PIL import ImageEnhance

    return lambda picture, value: getattr(ImageEnhance, name)(picture).enhance(value)


def _ops(name):
    from PIL import ImageOps

    return getattr(ImageOps, name)


PIL_ORACLES = {  # op -> (ours, PIL's, per-image values)
    "brightness": (A.apply_brightness, lambda: _enhance("Brightness"), FACTORS),
    "contrast": (A.apply_contrast, lambda: _enhance("Contrast"), FACTORS),
    "color": (A.apply_color, lambda: _enhance("Color"), FACTORS),
    "sharpness": (A.apply_sharpness, lambda: _enhance("Sharpness"), FACTORS),
    "posterize": (
        A.apply_posterize,
        lambda: lambda p, v: _ops("posterize")(p, int(v)),
        torch.tensor([1, 2, 4, 5, 7, 8]),
    ),
    "solarize": (A.apply_solarize, lambda: _ops("solarize"), torch.tensor([0.0, 10.5, 128, 200.2, 255, 254.9])),
    "autocontrast": (lambda x, _: A.apply_autocontrast(x), lambda: lambda p, v: _ops("autocontrast")(p), FACTORS),
    "equalize": (lambda x, _: A.apply_equalize(x), lambda: lambda p, v: _ops("equalize")(p), FACTORS),
}


@pytest.mark.parametrize("name", PIL_ORACLES)
def test_colour_op_equals_pil_exactly(name):
    pytest.importorskip("PIL")
    ours, theirs, values = PIL_ORACLES[name]
    images = images_for_oracle()
    reference = torch.stack([_tensor(theirs()(_pil(image), float(v))) for image, v in zip(images, values, strict=True)])
    assert torch.equal(ours(images, values), reference)


# Magnitudes away from exact half-pixel ties (0.3 * 5 px = 1.5 px), where nearest sampling may round either way.
GEOMETRY = {  # op -> (ours, kornia's, values)
    "rotate": (A.apply_rotate, "rotate", torch.tensor([-30.0, -12.3, 0.0, 7.7, 20.0, 29.1])),
    "shear_x": (
        lambda x, v: A.apply_shear(x, v, "x"),
        "shear_x",
        torch.tensor([-0.273, -0.114, 0.0, 0.052, 0.221, 0.287]),
    ),
    "shear_y": (
        lambda x, v: A.apply_shear(x, v, "y"),
        "shear_y",
        torch.tensor([-0.273, -0.114, 0.0, 0.052, 0.221, 0.287]),
    ),
    "translate_x": (lambda x, v: A.apply_translate(x, v, "x"), "translate_x", torch.tensor([-5.0, -2, 0, 1, 3, 9])),
    "translate_y": (lambda x, v: A.apply_translate(x, v, "y"), "translate_y", torch.tensor([-5.0, -2, 0, 1, 3, 9])),
}


def _kornia(name: str, images: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    transform = pytest.importorskip("kornia.geometry.transform")
    floats = images.float()
    if name == "rotate":
        out = transform.rotate(floats, values, mode="nearest")
    else:
        pair = torch.zeros(len(values), 2)
        pair[:, 0 if name.endswith("_x") else 1] = values
        out = (transform.shear if name.startswith("shear") else transform.translate)(floats, pair, mode="nearest")
    return out.round().to(torch.uint8)


@pytest.mark.parametrize("name", GEOMETRY)
def test_geometric_op_equals_kornia_nearest(name):
    ours, theirs, values = GEOMETRY[name]
    images = images_for_oracle()
    assert torch.equal(ours(images, values), _kornia(theirs, images, values))


def test_rotation_is_counter_clockwise_about_the_centre_and_translation_fills_black():
    image = torch.zeros(1, 1, 9, 9, dtype=torch.uint8)
    image[0, 0, 1, 6] = 200  # up and to the right of the centre (4, 4)
    rotated = A.apply_rotate(image, torch.tensor([90.0]))
    assert rotated[0, 0, 2, 1] == 200 and int(rotated.sum()) == 200  # now up and to the left
    shifted = A.apply_translate(torch.full((1, 1, 4, 4), 7, dtype=torch.uint8), torch.tensor([2.0]), "x")
    assert shifted[0, 0, :, :2].eq(0).all() and shifted[0, 0, :, 2:].eq(7).all()


def test_batched_trivial_equals_a_per_image_loop():
    images = torch.randint(0, 256, (40, 3, 10, 12), generator=gen(4), dtype=torch.uint8)
    params = A.trivial_params(len(images), device=images.device, generator=gen(5))
    batched = A.apply_trivial(images, params)
    for row in range(len(images)):
        one = A.TrivialParams(*(p[row : row + 1] for p in params))
        expected = _apply_op(A.TRIVIAL_OPS[int(params.op[row])], images[row : row + 1], one)
        assert torch.equal(batched[row : row + 1], expected), A.TRIVIAL_OPS[int(params.op[row])]


def test_ops_are_uniform_magnitudes_uniform_and_translation_scales_with_the_image():
    params = A.trivial_params(14_000, device=torch.device("cpu"), generator=gen(6))
    counts = torch.bincount(params.op, minlength=14).float()
    assert len(A.TRIVIAL_OPS) == 14 and (counts - 1000).abs().max() < 5 * 1000**0.5
    assert float(params.magnitude.min()) >= 0 and float(params.magnitude.max()) < 1
    assert (
        abs(float(params.magnitude.mean()) - 0.5) < 0.01 and abs(float((params.sign > 0).float().mean()) - 0.5) < 0.02
    )
    largest = A.TrivialParams(torch.tensor([4]), torch.tensor([1.0]), torch.tensor([1.0]))
    for side in (32, 64):  # 150/331 of the side, RandAugment's 150 px at 331 px
        image = torch.zeros(1, 1, side, side, dtype=torch.uint8)
        image[0, 0, :, 0] = 255
        moved = _apply_op("translate_x", image, largest)
        assert int(moved[0, 0, 0].argmax()) == round(150 / 331 * side)


# ---------------------------------------------------------------- setting C


def test_setting_c_is_flip_crop_trivial_at_the_data_scale_and_usable_by_name():
    from lossaug.run.config import TrainConfig
    from lossaug.run.method import setting_spec
    from lossaug.selection import LossAwareAugment

    assert setting_spec(TrainConfig(setting="C"), 32) == "flip,crop:4,trivial"
    assert setting_spec(TrainConfig(setting="C", dataset="folder"), 64) == "flip,crop:8,trivial"
    images = torch.randint(0, 256, (4, 3, 16, 16), generator=gen(0), dtype=torch.uint8)
    candidates = LossAwareAugment("trivial").candidates(images, num_candidates=3, generator=gen(1))
    assert candidates.shape == (4, 3, 3, 16, 16)


def test_candidate_zero_of_setting_c_is_the_baselines_draw():
    from lossaug.selection import make_candidates

    images = torch.randint(0, 256, (8, 3, 16, 16), generator=gen(0), dtype=torch.uint8)
    augment = A.parse_augment("flip,crop:2,trivial")
    baseline = make_candidates(images, augment, 1, generator=gen(1), extra_generator=gen(2))
    proposed = make_candidates(images, augment, 4, generator=gen(1), extra_generator=gen(2))
    assert torch.equal(proposed[:, 0], baseline[:, 0])
