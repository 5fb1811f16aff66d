"""``MultiView``: M candidates per image from any per-image transform (torchvision, albumentations, a function),
made in DataLoader workers, with every draw seeded by ``view_seed`` so that views do not depend on workers, ranks
or loading order.
"""

from __future__ import annotations

import contextlib
import inspect
import random
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch
from PIL import Image

from lossaug.errors import InputError
from lossaug.seeds import stream_seed

__all__ = ["MultiView", "view_seed"]


def view_seed(seed: int, epoch: int, index: int, view: int) -> int:
    """The 63-bit seed of draw ``view`` of item ``index`` in ``epoch`` (a named stream of ``seed``)."""
    return stream_seed(seed, f"MultiView:{epoch}:{index}:{view}")


@contextlib.contextmanager
def _seeded_globals(seed: int) -> Iterator[None]:
    """Seed Python's ``random``, NumPy's global generator and torch's CPU generator from ``seed``; restore all
    three on exit, so the caller's random state is exactly as it was."""
    python_state, numpy_state = random.getstate(), np.random.get_state()
    try:
        with torch.random.fork_rng(devices=[]):
            random.seed(seed)
            np.random.seed([seed & 0xFFFFFFFF, seed >> 32])  # NumPy's legacy seed takes 32-bit words
            torch.default_generator.manual_seed(seed)  # the CPU one only: fork_rng restores no CUDA state here
            yield
    finally:
        random.setstate(python_state)
        np.random.set_state(numpy_state)


def _parameters(fn: Callable) -> dict[str, inspect.Parameter] | None:
    try:
        return dict(inspect.signature(fn).parameters)
    except (TypeError, ValueError):  # some builtins and C extensions have no signature
        return None


def _random_keyword(transform: Callable) -> str | None:
    """``"rng"`` or ``"generator"`` when ``transform`` takes that keyword, else None."""
    params = _parameters(transform) or {}
    for name in ("rng", "generator"):
        if name in params and params[name].kind in (params[name].POSITIONAL_OR_KEYWORD, params[name].KEYWORD_ONLY):
            return name
    return None


def _takes_image_keyword(transform: Callable) -> bool:
    """Whether ``transform`` is albumentations-style: called as ``transform(image=array)``, returning a dict."""
    if type(transform).__module__.partition(".")[0] == "albumentations":
        return True
    params = _parameters(transform)
    if params is None or "image" not in params or params["image"].kind != params["image"].KEYWORD_ONLY:
        return False
    return not any(p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) for p in params.values())


def _as_hwc_array(image: Any) -> np.ndarray:
    """A PIL image, ``(C,H,W)`` tensor or numpy array as the ``(H,W,C)`` (or ``(H,W)``) array albumentations
    expects."""
    if isinstance(image, torch.Tensor):
        return image.permute(1, 2, 0).numpy() if image.dim() == 3 else image.numpy()
    return np.asarray(image)


def _as_chw_tensor(view: Any, where: str) -> torch.Tensor:
    """A transform's output as a ``(C,H,W)`` tensor: tensors pass through (``(H,W)`` gains C=1); PIL images and
    ``(H,W,C)`` or ``(H,W)`` numpy arrays become tensors of their dtype (uint8 for 8-bit images)."""
    if isinstance(view, torch.Tensor):
        # as_subclass: torchvision's tv_tensors.Image and friends become plain tensors before stacking.
        tensor = view.as_subclass(torch.Tensor)
    elif isinstance(view, (Image.Image, np.ndarray)):
        array = np.asarray(view)
        if array.ndim not in (2, 3):
            raise InputError(f"{where}: expected an (H,W,C) or (H,W) image, got an array of shape {array.shape}")
        array = array[:, :, None] if array.ndim == 2 else array
        tensor = torch.from_numpy(np.ascontiguousarray(array.transpose(2, 0, 1)))
    else:
        raise InputError(
            f"{where}: the transform returned a {type(view).__name__}; expected a tensor, PIL image or numpy array"
        )
    if tensor.dim() == 2:
        tensor = tensor.unsqueeze(0)
    if tensor.dim() != 3:
        raise InputError(f"{where}: expected a (C,H,W) image, got a tensor of shape {tuple(tensor.shape)}")
    return tensor


class MultiView(torch.utils.data.Dataset):
    """``num_candidates`` independent draws of a per-image ``transform`` for each item of ``dataset``:
    ``views (M,C,H,W), target = multiview[i]``, so a DataLoader yields ``candidates (B,M,C,H,W)`` ready for
    ``lossaug.select_candidates``.

    ``dataset[i]`` must be ``(image, target)``; ``image`` goes to ``transform`` unchanged (a PIL image for
    torchvision-style transforms), except for albumentations-style transforms (called ``transform(image=...)``,
    returning a dict), which get an ``(H,W,C)`` numpy array. ``transform`` may return a tensor, a PIL image or an
    ``(H,W,C)`` numpy array; the latter two become ``(C,H,W)`` tensors of their dtype (uint8 for 8-bit images).

    What is guaranteed: draw ``m`` of item ``i`` in epoch ``e`` depends only on ``view_seed(seed, e, i, m)``, a hash
    of the four numbers. The same (seed, epoch, index) gives identical views across runs, DataLoader worker counts,
    which worker loads the item, ranks and loading order; any other (seed, epoch, index, view) gets an unrelated
    seed, so draws do not repeat across workers, ranks or epochs. Two loads of the same index in the same epoch do
    give the same views (a sampler with replacement; ``DistributedSampler`` padding, which repeats up to
    ``world_size - 1`` indices). Inside each draw, Python's ``random``, NumPy's global generator and torch's CPU
    generator are seeded from that seed and restored afterwards, and a transform that takes an ``rng`` keyword gets
    a ``random.Random`` (``generator``: a ``torch.Generator``) seeded likewise. A transform with its own generator
    and a ``set_random_seed(seed)`` method (albumentations 2.x ``Compose``) is re-seeded before each draw (a 32-bit
    seed); a transform whose randomness comes from anywhere else (its own unseeded generator, the time) is not
    covered. The global seeding assumes one thread per process calls ``__getitem__`` (true of DataLoader workers).

    Call ``set_epoch(epoch)`` before iterating the DataLoader each epoch, as with ``DistributedSampler``. The epoch
    lives in shared memory, so persistent workers (``persistent_workers=True``) see it too.
    """

    def __init__(self, dataset: Any, transform: Callable, num_candidates: int, *, seed: int = 0):
        if not hasattr(dataset, "__getitem__") or not hasattr(dataset, "__len__"):
            raise InputError(f"dataset must be map-style (__getitem__ and __len__), got {type(dataset).__name__}")
        if not callable(transform):
            raise InputError(f"transform must be callable, got {type(transform).__name__}")
        if isinstance(num_candidates, bool) or not isinstance(num_candidates, int) or num_candidates < 1:
            raise InputError(f"num_candidates must be an int >= 1, got {num_candidates!r}")
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise InputError(f"seed must be an int, got {seed!r}")
        self.dataset = dataset
        self.transform = transform
        self.num_candidates = num_candidates
        self.seed = seed
        # Shared memory: DataLoader workers (forked, spawned, or persistent across epochs) read the epoch that
        # set_epoch wrote in the main process, instead of the copy they were started with.
        self._epoch = torch.zeros((), dtype=torch.int64).share_memory_()
        self._keyword = _random_keyword(transform)
        self._image_keyword = _takes_image_keyword(transform)

    @property
    def epoch(self) -> int:
        return int(self._epoch)

    def set_epoch(self, epoch: int) -> None:
        """Draw this epoch's views from now on; call it before iterating the DataLoader each epoch."""
        if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0:
            raise InputError(f"epoch must be an int >= 0, got {epoch!r}")
        self._epoch.fill_(epoch)

    def __len__(self) -> int:
        return len(self.dataset)

    def _draw(self, image: Any, seed: int) -> Any:
        if hasattr(self.transform, "set_random_seed"):
            self.transform.set_random_seed(seed & 0xFFFFFFFF)
        with _seeded_globals(seed):
            if self._image_keyword:
                return self.transform(image=_as_hwc_array(image))["image"]
            if self._keyword == "rng":
                return self.transform(image, rng=random.Random(seed))
            if self._keyword == "generator":
                return self.transform(image, generator=torch.Generator().manual_seed(seed))
            return self.transform(image)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, Any]:
        """``(views (M,C,H,W), target)`` for item ``index``."""
        index = int(index)
        item = self.dataset[index]
        if not isinstance(item, (tuple, list)) or len(item) != 2:
            raise InputError(f"dataset item {index} must be an (image, target) pair, got {type(item).__name__}")
        image, target = item
        epoch = self.epoch
        views = [
            _as_chw_tensor(self._draw(image, view_seed(self.seed, epoch, index, m)), f"item {index} view {m}")
            for m in range(self.num_candidates)
        ]
        shapes = {tuple(v.shape) for v in views}
        if len(shapes) > 1:
            raise InputError(
                f"item {index}: the transform gave views of different shapes {sorted(shapes)}; "
                "candidates must share one shape (crop or resize to a fixed size)"
            )
        return torch.stack(views), target
