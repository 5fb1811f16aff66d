"""Tests for lossaug.data: CIFAR parsing and download, image folders, archives, the decode cache, mini CIFAR-10.

Everything runs offline: CIFAR archives are tiny fakes in the official format, served from 127.0.0.1.
"""

from __future__ import annotations

import hashlib
import http.server
import io
import os
import pickle
import subprocess
import sys
import tarfile
import threading
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from lossaug import data
from lossaug.data import (
    ImageDataset,
    download,
    load_cifar,
    load_dataset,
    load_image_folder,
    load_mini_cifar10,
    safe_extract,
)

REPO = Path(__file__).resolve().parents[1]
# shared/ sits beside the checkout, here and in CI.
SHARED_CIFAR_JPEG = Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10-jpeg.tar.xz"
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


# ---------------------------------------------------------------------------------------------------------------
# A local HTTP server


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        self.server.requests.append(self.path)
        body = self.server.files.get(self.path)
        if body is None:
            self.send_error(404)
            return
        self.send_response(200)
        # A declared length above the body's makes the client see the connection close early.
        self.send_header("Content-Length", str(self.server.declared.get(self.path, len(body))))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.files, httpd.declared, httpd.requests = {}, {}, []
    httpd.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()
    thread.join()


# ---------------------------------------------------------------------------------------------------------------
# Fake CIFAR archives in the official layout


def _cifar_rows(images: np.ndarray) -> np.ndarray:
    """(N,3,32,32) -> (N,3072) as the official files store it: the R plane, G plane, B plane, each row-major."""
    n = len(images)
    return np.concatenate([images[:, c].reshape(n, 32 * 32) for c in range(3)], axis=1)


def _tar_gz(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, blob in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))
    return buffer.getvalue()


def _fake_cifar(name: str, per_batch: int = 2, seed: int = 0) -> tuple[bytes, dict[str, np.ndarray], tuple]:
    """(archive bytes, expected arrays, class names) for a tiny CIFAR-10 or CIFAR-100."""
    rng = np.random.default_rng(seed)
    if name == "cifar10":
        folder, meta, test_file = "cifar-10-batches-py", "batches.meta", "test_batch"
        train_files = [f"data_batch_{i}" for i in range(1, 6)]
        classes, label_key, names_key = CIFAR10_CLASSES, b"labels", b"label_names"  # bytes keys, as Python 2 wrote
    else:
        folder, meta, test_file, train_files = "cifar-100-python", "meta", "test", ["train"]
        classes = tuple(f"class_{i:02d}" for i in range(100))
        label_key, names_key = "fine_labels", "fine_label_names"
    members, expected = {}, {"train_images": [], "train_labels": []}
    for file in [*train_files, test_file]:
        images = rng.integers(0, 256, (per_batch, 3, 32, 32), dtype=np.uint8)
        labels = rng.integers(0, len(classes), per_batch).tolist()
        batch = {b"batch_label" if name == "cifar10" else "batch_label": file, "data": _cifar_rows(images)}
        batch[label_key] = labels
        if name == "cifar100":
            batch["coarse_labels"] = [label // 5 for label in labels]
        members[f"{folder}/{file}"] = pickle.dumps(batch, protocol=2)
        split = "test" if file == test_file else "train"
        expected.setdefault(f"{split}_images", []).append(images)
        expected.setdefault(f"{split}_labels", []).append(np.array(labels, dtype=np.int64))
    members[f"{folder}/{meta}"] = pickle.dumps({names_key: list(classes)}, protocol=2)
    return _tar_gz(members), {k: np.concatenate(v) for k, v in expected.items()}, classes


def _serve_cifar(server, monkeypatch, name: str, archive: bytes, md5: str | None = None) -> str:
    filename = data.CIFAR_SOURCES[name][2]
    server.files[f"/{filename}"] = archive
    monkeypatch.setitem(
        data.CIFAR_SOURCES, name, (f"{server.url}/{filename}", md5 or hashlib.md5(archive).hexdigest(), filename)
    )
    return filename


def _assert_matches(dataset: ImageDataset, expected: dict[str, np.ndarray], classes: tuple) -> None:
    assert dataset.classes == classes and dataset.num_classes == len(classes)
    for split in ("train", "test"):
        got = getattr(dataset, split)
        assert got.images.dtype == torch.uint8 and got.images.is_contiguous()
        assert got.labels.dtype == torch.int64
        np.testing.assert_array_equal(got.images.numpy(), expected[f"{split}_images"])
        np.testing.assert_array_equal(got.labels.numpy(), expected[f"{split}_labels"])


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_cifar_download_round_trips_pixels_and_labels(server, monkeypatch, tmp_path, name):
    archive, expected, classes = _fake_cifar(name)
    filename = _serve_cifar(server, monkeypatch, name, archive)
    logs: list[str] = []
    dataset = load_dataset(name, cache_dir=tmp_path / "cache", log=logs.append)
    _assert_matches(dataset, expected, classes)
    assert dataset.train.images.shape == (len(expected["train_labels"]), 3, 32, 32)
    assert (tmp_path / "cache" / filename).read_bytes() == archive
    assert any("100%" in line for line in logs)

    # Found again without the network, as the archive, the folder holding it, and the extracted folder.
    again = load_cifar(name, None, cache_dir=tmp_path / "cache", download=False)
    _assert_matches(again, expected, classes)
    _assert_matches(load_dataset(name, tmp_path / "cache" / filename), expected, classes)
    safe_extract(tmp_path / "cache" / filename, tmp_path / "extracted")
    folder = data._CIFAR_LAYOUTS[name].folder
    _assert_matches(load_dataset(name, tmp_path / "extracted"), expected, classes)
    _assert_matches(load_dataset(name, tmp_path / "extracted" / folder), expected, classes)
    assert len(server.requests) == 1


def test_cifar_pixel_layout_is_rgb_planes():
    image = np.zeros((1, 3, 32, 32), dtype=np.uint8)
    image[0, 1, 2, 3] = 7  # green, row 2, column 3
    rows = _cifar_rows(image)
    assert rows[0, 1024 + 2 * 32 + 3] == 7 and rows.sum() == 7
    split = data._cifar_split([("x", {"data": rows, "labels": [0]})], "labels", 10)
    assert split.images[0, 1, 2, 3] == 7 and int(split.images.sum()) == 7


def test_md5_mismatch_is_refused_and_not_kept(server, monkeypatch, tmp_path):
    archive, _, _ = _fake_cifar("cifar10")
    filename = _serve_cifar(server, monkeypatch, "cifar10", archive, md5="0" * 32)
    with pytest.raises(ValueError, match=rf"md5 mismatch for .*{filename}.*expected 0{{32}}, got [0-9a-f]{{32}}"):
        load_cifar("cifar10", tmp_path, cache_dir=None)
    assert list(tmp_path.iterdir()) == []


def test_truncated_download_is_refused_and_not_kept(server, tmp_path):
    body = b"x" * 5000
    server.files["/cut.tar.gz"] = body[:3000]
    server.declared["/cut.tar.gz"] = len(body)
    dest = tmp_path / "cut.tar.gz"
    with pytest.raises(ValueError, match=r"cut short.*3000.*5000"):
        download(f"{server.url}/cut.tar.gz", dest, hashlib.md5(body).hexdigest())
    assert list(tmp_path.iterdir()) == []


def test_download_writes_verified_file(server, tmp_path):
    server.files["/f.bin"] = body = os.urandom(3000)
    dest = download(f"{server.url}/f.bin", tmp_path / "sub" / "f.bin", hashlib.md5(body).hexdigest())
    assert dest.read_bytes() == body and sorted(p.name for p in dest.parent.iterdir()) == ["f.bin"]


def test_cifar_missing_data_without_download(tmp_path):
    with pytest.raises(FileNotFoundError, match="cifar-10-python.tar.gz"):
        load_cifar("cifar10", tmp_path, cache_dir=None, download=False)
    with pytest.raises(FileNotFoundError, match="nowhere"):
        load_dataset("cifar100", tmp_path / "nowhere")


def test_cut_cifar_archive_is_an_error_naming_it(tmp_path):
    archive, _, _ = _fake_cifar("cifar10")
    cut = tmp_path / "cifar-10-python.tar.gz"
    cut.write_bytes(archive[: len(archive) // 2])
    with pytest.raises(ValueError, match="cifar-10-python.tar.gz"):
        load_cifar("cifar10", cut, cache_dir=None)


class _MakeDir:
    """Pickles as a call that creates the folder `path`: loading it with plain pickle runs that call."""

    def __init__(self, path: Path, via_eval: bool):
        self.path, self.via_eval = str(path), via_eval

    def __reduce__(self):
        if self.via_eval:
            return (eval, (f"__import__('os').mkdir({self.path!r})",))
        return (os.mkdir, (self.path,))


@pytest.mark.parametrize("via_eval", [False, True], ids=["os.mkdir", "builtins.eval"])
def test_malicious_pickle_is_refused_without_running(tmp_path, via_eval):
    payload = pickle.dumps({"data": _MakeDir(tmp_path / "pwned", via_eval), "labels": [0]}, protocol=2)
    # Oracle: the payload does run under an unrestricted unpickler.
    pickle.loads(pickle.dumps(_MakeDir(tmp_path / "control", via_eval), protocol=2))
    assert (tmp_path / "control").is_dir()

    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    (folder / "batches.meta").write_bytes(pickle.dumps({"label_names": list(CIFAR10_CLASSES)}, protocol=2))
    for name in [*(f"data_batch_{i}" for i in range(1, 6)), "test_batch"]:
        (folder / name).write_bytes(payload)
    with pytest.raises(ValueError, match=r"data_batch_1.*not allowed"):
        load_cifar("cifar10", folder, cache_dir=None)
    assert not (tmp_path / "pwned").exists()


# ---------------------------------------------------------------------------------------------------------------
# Image folders


def _write_image(path: Path, pixels: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)


def _gray(seed: int, size: tuple[int, int] = (8, 8)) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size, dtype=np.uint8)


def _rgb(seed: int, size: tuple[int, int] = (8, 8)) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (*size, 3), dtype=np.uint8)


def _make_folder(root: Path, make=_gray, test_name: str = "test") -> dict[str, list[np.ndarray]]:
    """Two classes, 2 train and 1 test PNG each; returns the pixels per split in load order."""
    pixels = {"train": [], "test": []}
    seed = 0
    for split, count in (("train", 2), ("test", 1)):
        for cls in ("dog", "cat"):  # written out of order: classes must come back sorted
            for i in range(count):
                seed += 1
                _write_image(root / (test_name if split == "test" else split) / cls / f"{i}.png", make(seed))
    for split, count in (("train", 2), ("test", 1)):
        for cls in ("cat", "dog"):
            for i in range(count):
                path = root / (test_name if split == "test" else split) / cls / f"{i}.png"
                pixels[split].append(np.asarray(Image.open(path)))
    return pixels


def test_grayscale_folder_keeps_one_channel(tmp_path):
    pixels = _make_folder(tmp_path)
    dataset = load_dataset("folder", tmp_path)
    assert dataset.classes == ("cat", "dog")
    assert dataset.train.images.shape == (4, 1, 8, 8) and dataset.test.images.shape == (2, 1, 8, 8)
    assert dataset.train.labels.tolist() == [0, 0, 1, 1] and dataset.test.labels.tolist() == [0, 1]
    np.testing.assert_array_equal(dataset.train.images[:, 0].numpy(), np.stack(pixels["train"]))


def test_mixed_gray_and_rgb_become_rgb(tmp_path):
    pixels = _make_folder(tmp_path, make=lambda seed: _gray(seed) if seed % 2 else _rgb(seed), test_name="val")
    dataset = load_image_folder(tmp_path)
    assert dataset.train.images.shape == (4, 3, 8, 8)
    for got, want in zip(dataset.train.images.numpy(), pixels["train"], strict=True):
        want = want if want.ndim == 3 else np.repeat(want[..., None], 3, axis=-1)
        np.testing.assert_array_equal(got.transpose(1, 2, 0), want)


def test_corrupt_image_is_named(tmp_path):
    _make_folder(tmp_path)
    (tmp_path / "train" / "cat" / "broken.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match=r"broken\.png"):
        load_image_folder(tmp_path)


def test_folder_layout_errors_name_the_path(tmp_path):
    _make_folder(tmp_path)
    (tmp_path / "train" / "empty").mkdir()
    with pytest.raises(ValueError, match=r"train/empty has no images"):
        load_image_folder(tmp_path)
    (tmp_path / "train" / "empty").rmdir()

    _write_image(tmp_path / "test" / "bird" / "0.png", _gray(99))
    with pytest.raises(ValueError, match=r"only in test: \['bird'\]"):
        load_image_folder(tmp_path)

    other = tmp_path / "no_test"
    _write_image(other / "train" / "a" / "0.png", _gray(1))
    with pytest.raises(FileNotFoundError, match="no test"):
        load_image_folder(other)
    with pytest.raises(FileNotFoundError, match="missing"):
        load_dataset("folder", tmp_path / "missing")


def test_mixed_sizes_need_image_size(tmp_path):
    _make_folder(tmp_path)
    _write_image(tmp_path / "train" / "dog" / "big.png", _gray(7, size=(12, 10)))
    with pytest.raises(ValueError, match=r"0\.png is 8x8 but .*big\.png is 10x12.*image-size"):
        load_image_folder(tmp_path)
    dataset = load_image_folder(tmp_path, image_size=6)
    assert dataset.train.images.shape == (5, 1, 6, 6) and dataset.test.images.shape == (2, 1, 6, 6)


def test_unknown_dataset_lists_choices():
    with pytest.raises(ValueError, match=r"unknown dataset 'imagenet'; choose from \['cifar10', 'cifar100'"):
        load_dataset("imagenet")


def _count_decodes(monkeypatch) -> list[int]:
    calls = [0]
    real = data._decode_one

    def counting(*args, **kwargs):
        calls[0] += 1
        return real(*args, **kwargs)

    monkeypatch.setattr(data, "_decode_one", counting)
    return calls


def test_decode_cache_hits_and_is_keyed_by_content_and_size(tmp_path, monkeypatch):
    root, cache = tmp_path / "imgs", tmp_path / "cache"
    _make_folder(root)
    calls = _count_decodes(monkeypatch)
    first = load_image_folder(root, cache_dir=cache)
    assert calls[0] == 6
    logs: list[str] = []
    second = load_image_folder(root, cache_dir=cache, log=logs.append)
    assert calls[0] == 6 and any(line.startswith("cache hit") for line in logs)
    assert second.classes == first.classes
    for split in ("train", "test"):
        assert torch.equal(getattr(second, split).images, getattr(first, split).images)
        assert torch.equal(getattr(second, split).labels, getattr(first, split).labels)

    load_image_folder(root, cache_dir=cache, image_size=4)
    assert calls[0] == 12
    _write_image(root / "train" / "cat" / "0.png", _gray(1234))  # same name, new content
    changed = load_image_folder(root, cache_dir=cache)
    assert calls[0] == 18 and not torch.equal(changed.train.images, first.train.images)
    assert not [p for p in cache.iterdir() if p.name.endswith(".part")]


@pytest.mark.parametrize("kind", ["tar.xz", "zip"])
def test_archive_of_a_folder_loads_like_the_folder(tmp_path, monkeypatch, kind):
    root = tmp_path / "set" / "pets"
    _make_folder(root, make=_rgb)
    archive = tmp_path / f"pets.{kind}"
    if kind == "zip":
        with zipfile.ZipFile(archive, "w") as zf:
            for path in sorted(root.rglob("*.png")):
                zf.write(path, path.relative_to(root.parent).as_posix())  # one top-level folder: pets/
    else:
        with tarfile.open(archive, "w:xz") as tar:
            tar.add(root, arcname="pets")
    with pytest.raises(ValueError, match="cache_dir"):
        load_dataset("folder", archive)
    expected = load_image_folder(root)
    calls = _count_decodes(monkeypatch)
    for _ in range(2):
        got = load_dataset("folder", str(archive), cache_dir=tmp_path / "cache")
        assert got.name == "pets" and got.classes == expected.classes
        assert torch.equal(got.train.images, expected.train.images)
        assert torch.equal(got.test.labels, expected.test.labels)
    assert calls[0] == 6  # the second load came from the cache


# ---------------------------------------------------------------------------------------------------------------
# Safe extraction


def _tar_with(path: Path, *members: tarfile.TarInfo) -> Path:
    with tarfile.open(path, "w") as tar:
        tar.addfile(_file_info("ok/fine.txt", b"fine"), io.BytesIO(b"fine"))
        for member in members:
            tar.addfile(member, io.BytesIO(b"evil") if member.isfile() else None)
    return path


def _file_info(name: str, blob: bytes = b"evil") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = len(blob)
    return info


def _link_info(name: str, target: str, kind: bytes) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    return info


@pytest.mark.parametrize(
    "member, reason",
    [
        (lambda tmp: _file_info("../evil"), "'..'"),
        (lambda tmp: _file_info("ok/../../evil"), "'..'"),
        (lambda tmp: _file_info(str(tmp / "evil")), "absolute"),
        (lambda tmp: _link_info("link", str(tmp / "evil"), tarfile.SYMTYPE), "symlink"),
        (lambda tmp: _link_info("hard", "ok/fine.txt", tarfile.LNKTYPE), "hardlink"),
        (lambda tmp: _link_info("fifo", "", tarfile.FIFOTYPE), "fifo"),
    ],
)
def test_safe_extract_refuses_escaping_members(tmp_path, member, reason):
    info = member(tmp_path)
    archive = _tar_with(tmp_path / "bad.tar", info)
    dest = tmp_path / "out" / "dest"
    with pytest.raises(ValueError, match=rf"{info.name!r}.*bad\.tar.*{reason}"):
        safe_extract(archive, dest)
    assert not (tmp_path / "evil").exists() and not (tmp_path / "out" / "evil").exists()
    assert list((tmp_path / "out").iterdir()) == []  # no half-extracted folder left behind


def test_safe_extract_refuses_zip_traversal(tmp_path):
    archive = tmp_path / "bad.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("ok.txt", b"ok")
        zf.writestr("../evil", b"evil")
    with pytest.raises(ValueError, match=r"'\.\./evil'.*bad\.zip"):
        safe_extract(archive, tmp_path / "dest")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.zip"]


def test_safe_extract_refuses_zip_symlink(tmp_path):
    archive = tmp_path / "link.zip"
    info = zipfile.ZipInfo("link")
    info.external_attr = (0o120777) << 16  # S_IFLNK: how zip stores a symlink from a Unix file system
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr(info, "/etc/passwd")
    with pytest.raises(ValueError, match=r"'link'.*link\.zip.*not a plain file"):
        safe_extract(archive, tmp_path / "dest")


def test_safe_extract_extracts_once(tmp_path):
    archive = _tar_with(tmp_path / "good.tar")
    dest = safe_extract(archive, tmp_path / "dest")
    assert (dest / "ok" / "fine.txt").read_bytes() == b"fine"
    (dest / "ok" / "fine.txt").write_bytes(b"edited")
    assert safe_extract(archive, dest) == dest  # a finished extraction is reused, not redone
    assert (dest / "ok" / "fine.txt").read_bytes() == b"edited"


# ---------------------------------------------------------------------------------------------------------------
# Mini CIFAR-10


def test_mini_cifar10_is_balanced_cifar():
    dataset = load_mini_cifar10()
    assert dataset.name == "mini" and dataset.classes == CIFAR10_CLASSES
    assert dataset.train.images.shape == (5000, 3, 32, 32) and dataset.test.images.shape == (1000, 3, 32, 32)
    assert dataset.train.images.dtype == torch.uint8 and dataset.train.labels.dtype == torch.int64
    assert dataset.train.labels.bincount().tolist() == [500] * 10
    assert dataset.test.labels.bincount().tolist() == [100] * 10
    # CIFAR-10's per-channel means are about (0.49, 0.48, 0.45): a check that channels are not swapped.
    means = dataset.train.images.float().mean(dim=(0, 2, 3)) / 255
    assert torch.allclose(means, torch.tensor([0.49, 0.48, 0.45]), atol=0.02)
    with pytest.raises(ValueError, match="takes no path"):
        load_dataset("mini", "somewhere")
    with pytest.raises(ValueError, match="32x32"):
        load_dataset("mini", image_size=64)


@pytest.mark.slow
@pytest.mark.skipif(not SHARED_CIFAR_JPEG.is_file(), reason="needs ../shared/data/cifar10-jpeg.tar.xz")
def test_mini_asset_is_reproducible(tmp_path):
    out = tmp_path / "mini.tar.xz"
    script = REPO / "experiments" / "make_mini_cifar10.py"
    subprocess.run([sys.executable, str(script), str(SHARED_CIFAR_JPEG), str(out)], check=True, capture_output=True)
    assert out.read_bytes() == (REPO / "src" / "lossaug" / "assets" / "mini_cifar10.tar.xz").read_bytes()
