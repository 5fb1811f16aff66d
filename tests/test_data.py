"""Tests for lossaug.data: CIFAR parsing and download, image folders, archives, the decode cache, mini CIFAR-10.

Everything runs offline: CIFAR archives are tiny fakes in the official format, served from 127.0.0.1.
"""

from __future__ import annotations

import hashlib
import http.server
import io
import json
import os
import pickle
import struct
import subprocess
import sys
import tarfile
import threading
import tracemalloc
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from lossaug import data
from lossaug.data import (
    ImageDataset,
    archives,
    cifar,
    data_fingerprint,
    download,
    fingerprint_differences,
    folders,
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
    folder = cifar._CIFAR_LAYOUTS[name].folder
    _assert_matches(load_dataset(name, tmp_path / "extracted"), expected, classes)
    _assert_matches(load_dataset(name, tmp_path / "extracted" / folder), expected, classes)
    assert len(server.requests) == 1


def test_cifar_pixel_layout_is_rgb_planes():
    image = np.zeros((1, 3, 32, 32), dtype=np.uint8)
    image[0, 1, 2, 3] = 7  # green, row 2, column 3
    rows = _cifar_rows(image)
    assert rows[0, 1024 + 2 * 32 + 3] == 7 and rows.sum() == 7
    split = cifar._cifar_split([("x", {"data": rows, "labels": [0]})], "labels", 10)
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
    with pytest.raises(ValueError, match=r"cannot read CIFAR archive .*cifar-10-python.tar.gz"):
        load_cifar("cifar10", cut, cache_dir=None, verify=False)


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


def test_local_and_cached_cifar_archives_are_md5_checked(tmp_path):
    archive, expected, classes = _fake_cifar("cifar10")
    fake_md5 = hashlib.md5(archive).hexdigest()
    official_md5 = data.CIFAR_SOURCES["cifar10"][1]
    path = tmp_path / "cifar-10-python.tar.gz"  # a fake under the official name
    path.write_bytes(archive)
    mismatch = rf"^md5 mismatch for {path}: expected {official_md5} .*got {fake_md5}; .*verify=False"
    with pytest.raises(ValueError, match=mismatch) as error:
        load_dataset("cifar10", path)  # given as the archive
    assert "\n" not in str(error.value)
    with pytest.raises(ValueError, match=mismatch):
        load_dataset("cifar10", tmp_path)  # as the folder holding it
    with pytest.raises(ValueError, match=mismatch):
        load_dataset("cifar10", cache_dir=tmp_path)  # found in the download cache
    _assert_matches(load_dataset("cifar10", path, verify=False), expected, classes)


def _py2_batch(rows: np.ndarray, labels: list[int]) -> bytes:
    """A batch file as the official ones are written: Python 2 cPickle protocol 2 of numpy 1 arrays, with the pixels
    as one byte string (read back as a latin1 str) and the dtype state (3, '|', None, None, None, -1, -1, 0)."""
    raw = rows.tobytes()
    return b"".join([
        b"\x80\x02}(U\x04data",
        b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\nK\x00\x85U\x01b\x87R",
        b"(K\x01J" + struct.pack("<i", rows.shape[0]) + b"J" + struct.pack("<i", rows.shape[1]) + b"\x86",
        b"cnumpy\ndtype\nU\x02u1K\x00K\x01\x87R(K\x03U\x01|NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb",
        b"\x89T" + struct.pack("<i", len(raw)) + raw + b"tb",
        b"U\x06labels](" + b"".join(b"K" + bytes([label]) for label in labels) + b"eu.",
    ])  # fmt: skip


def test_official_python2_batch_layout_and_numpy_redumps_load():
    rng = np.random.default_rng(0)
    rows = rng.integers(0, 256, (3, 3072), dtype=np.uint8)
    blob = _py2_batch(rows, [1, 0, 9])
    with warnings.catch_warnings():  # oracle: numpy's own unpickling of it (numpy 2 warns about numpy.core)
        warnings.simplefilter("ignore")
        np.testing.assert_array_equal(pickle.loads(blob, encoding="latin1")["data"], rows)
    batches = [("py2", cifar._unpickle_batch(blob, "py2"))]
    for protocol in range(2, 6):
        blob = pickle.dumps({"data": rows, "labels": [1, 0, 9]}, protocol=protocol)
        batches.append((f"protocol {protocol}", cifar._unpickle_batch(blob, f"protocol {protocol}")))
    for where, batch in batches:
        assert batch["data"].dtype == np.uint8 and batch["labels"] == [1, 0, 9], where
        np.testing.assert_array_equal(batch["data"], rows, err_msg=where)
    split = cifar._cifar_split(batches, "labels", 10)
    assert split.images.shape == (15, 3, 32, 32) and split.images.is_contiguous()


_64_MIB = b"J\x00\x00\x00\x04"  # BININT 2**26: 64 MiB of bytes
_ALLOCATING_PICKLES = {
    # 30 bytes: bytearray(2**26)
    "bytearray": (b"\x80\x02cbuiltins\nbytearray\n" + _64_MIB + b"\x85R.", "builtins.bytearray is not allowed"),
    # _reconstruct(ndarray, (2**26,), "b"): numpy allocates the shape it is given
    "_reconstruct shape": (
        b"\x80\x02cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\n" + _64_MIB + b"\x85U\x01b\x87R.",
        "has no data",
    ),
    # ndarray((2**23,)): 8M float64
    "ndarray call": (b"\x80\x02cnumpy\nndarray\nJ\x00\x00\x80\x00\x85\x85R.", "numpy.ndarray may not be called"),
    # a sub-array dtype of 2**26 bytes, then one element of it
    "subarray dtype": (
        b"\x80\x02cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\nK\x01\x85"
        b"cnumpy\ndtype\nU\x02u1" + _64_MIB + b"\x85\x86\x85R\x87R.",
        "is not allowed",
    ),
}


@pytest.mark.parametrize("name", sorted(_ALLOCATING_PICKLES))
def test_tiny_pickles_cannot_allocate_memory(name):
    blob, reason = _ALLOCATING_PICKLES[name]
    assert len(blob) < 100
    tracemalloc.start()
    try:
        with pytest.raises(ValueError, match=rf"cannot read CIFAR batch x:.*{reason}") as error:
            cifar._unpickle_batch(blob, "x")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 << 20, f"{peak / 2**20:.0f} MiB allocated for a {len(blob)}-byte pickle"
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("module, name", [("_codecs", "encode"), ("numpy", "dtype"), ("numpy", "ndarray")])
def test_pickle_cannot_modify_the_allowed_globals(module, name):
    # BUILD with slot state (None, {"pwned": 1}) calls setattr on its object: on a global, for every later load.
    blob = f"\x80\x02c{module}\n{name}\nN}}U\x05pwnedK\x01s\x86b.".encode("latin1")
    with pytest.raises(ValueError, match="cannot read CIFAR batch"):
        cifar._unpickle_batch(blob, "x")
    assert not hasattr(cifar._PICKLE_GLOBALS[(module, name)], "pwned")


def test_oversized_cifar_member_is_refused_before_reading(tmp_path, monkeypatch):
    archive, _, _ = _fake_cifar("cifar10")
    path = tmp_path / "cifar-10-python.tar.gz"
    path.write_bytes(archive)
    monkeypatch.setattr(cifar, "_MAX_CIFAR_FILE", 1000)
    with pytest.raises(ValueError, match=r"member cifar-10-batches-py/\w+ is \d+ bytes, over the 1000"):
        load_cifar("cifar10", path, cache_dir=None, verify=False)


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
    real = folders._decode_one

    def counting(*args, **kwargs):
        calls[0] += 1
        return real(*args, **kwargs)

    monkeypatch.setattr(folders, "_decode_one", counting)
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


def _zeros_archive(path: Path, sizes: dict[str, int]) -> Path:
    """A .tar.gz (or .zip) of zero-filled members: tiny on disk, large when extracted."""
    if path.suffix == ".zip":
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
            for name, size in sizes.items():
                zf.writestr(name, bytes(size))
        return path
    with tarfile.open(path, "w:gz") as tar:
        for name, size in sizes.items():
            tar.addfile(_file_info(name, bytes(size)), io.BytesIO(bytes(size)))
    return path


@pytest.mark.parametrize("kind", ["tar.gz", "zip"])
def test_extraction_is_capped_by_ratio_and_total(tmp_path, kind):
    bomb = _zeros_archive(tmp_path / f"bomb.{kind}", {"a/small": 1000, "a/zeros": 4 << 20})
    assert bomb.stat().st_size < 10_000  # ratio > 400
    out = tmp_path / "out"
    with pytest.raises(ValueError, match=rf"'a/zeros' in {bomb}: .* over the cap of \d+ \(200 times the archive's"):
        safe_extract(bomb, out / "dest")  # the defaults
    with pytest.raises(ValueError, match=r"'a/zeros' in .* over the cap of 2000000 \(max_bytes\)"):
        safe_extract(bomb, out / "dest", max_bytes=2_000_000, max_ratio=10_000)
    assert list(out.iterdir()) == []  # nothing half-extracted left behind
    assert (safe_extract(bomb, out / "dest", max_ratio=10_000) / "a" / "zeros").stat().st_size == 4 << 20


@pytest.mark.parametrize("kind", ["tar.gz", "zip"])
def test_archives_read_in_memory_are_capped_like_extraction(tmp_path, kind):
    bomb = _zeros_archive(tmp_path / f"bomb.{kind}", {"a/small": 1000, "a/zeros": 4 << 20})
    read = []
    with pytest.raises(ValueError, match=rf"'a/zeros' in {bomb}: .* over the cap of \d+ \(200 times the archive's"):
        for name, _ in archives.archive_members(bomb):
            read.append(name.as_posix())
    assert read == ["a/small"]  # refused before the member's bytes were read
    with pytest.raises(ValueError, match=r"'a/zeros' in blob: "):
        list(archives.archive_members(bomb.read_bytes(), "blob"))


def test_many_empty_members_count_against_the_cap(tmp_path):
    bomb = _zeros_archive(tmp_path / "empty.tar.gz", {f"e/{i}": 0 for i in range(1000)})
    with pytest.raises(ValueError, match=r"refusing archive member 'e/\d+'.*over the cap of 400000"):
        safe_extract(bomb, tmp_path / "dest", max_bytes=400_000, max_ratio=10_000)


@pytest.mark.slow
@pytest.mark.skipif(not SHARED_CIFAR_JPEG.is_file(), reason="needs ../shared/data/cifar10-jpeg.tar.xz")
def test_shared_cifar_jpeg_archive_is_within_the_default_caps():
    budget = archives._Budget(SHARED_CIFAR_JPEG, archives.MAX_EXTRACT_BYTES, archives.MAX_EXTRACT_RATIO)
    with tarfile.open(SHARED_CIFAR_JPEG) as tar:  # the member list only, nothing extracted
        for member in tar:
            budget.add(member.name, member.size if member.isfile() else 0)
    assert budget.total < budget.cap / 20  # about 86 MB of 3.7 GB allowed (ratio 4.6 of 200)


# ---------------------------------------------------------------------------------------------------------------
# The registry of sources, load_for, and what the shared loader parts promise


def test_every_source_is_registered_with_its_kind():
    assert data.DATASETS == ("cifar10", "cifar100", "folder", "mini", "fsdd", "audio-folder")
    kinds = {name: data.data_kind(name) for name in data.DATASETS}
    assert kinds == {"cifar10": "image", "cifar100": "image", "folder": "image", "mini": "image", "fsdd": "audio",
                     "audio-folder": "audio"}  # fmt: skip
    with pytest.raises(ValueError, match=r"unknown dataset 'imagenet'; choose from \['cifar10', 'cifar100'"):
        data.data_kind("imagenet")


def test_load_for_loads_the_configured_data_and_keeps_its_classes():
    from lossaug.run.config import TrainConfig

    got = data.load_for(TrainConfig(dataset="mini", classes="truck,cat"))
    expected = data.select_classes(load_mini_cifar10(), ["cat", "truck"])
    assert (got.name, got.kind, got.classes, got.sample_rate, got.num_classes) == ("mini", "image", ("cat", "truck"),
                                                                                   None, 2)  # fmt: skip
    for split in ("train", "test"):
        assert torch.equal(getattr(got, split).inputs, getattr(expected, split).images)
        assert torch.equal(getattr(got, split).labels, getattr(expected, split).labels)


def test_decode_cache_files_keep_the_names_earlier_versions_wrote(tmp_path):
    # A cache written before the loaders shared one cached loader still hits: same key text, same file name.
    root, cache = tmp_path / "imgs", tmp_path / "cache"
    _make_folder(root)
    load_image_folder(root, cache_dir=cache, image_size=4)
    h = hashlib.sha256()
    for split in ("train", "test"):
        for cls in ("cat", "dog"):
            for path in sorted((root / split / cls).iterdir()):
                h.update(f"{path.relative_to(root).as_posix()}\0{path.stat().st_size}\0".encode() + path.read_bytes())
    key = hashlib.sha256(f"lossaug-decoded-v1\0{h.hexdigest()}\0{4}".encode()).hexdigest()[:24]
    assert [p.name for p in cache.iterdir()] == [f"imgs-decoded-{key}.npz"]


def test_one_wrapping_top_folder_rule():
    assert archives.wrapping_folder({"pets": True}) == "pets"
    assert archives.wrapping_folder({"pets": True, ".DS_Store": False}) == "pets"  # hidden entries do not count
    assert archives.wrapping_folder({"train": True}) is None  # the layout itself, not a wrapper
    assert archives.wrapping_folder({"a": True, "b": True}) is None
    assert archives.wrapping_folder({"a.png": False}) is None


# ---------------------------------------------------------------------------------------------------------------
# Data fingerprints


def test_data_fingerprint_tells_data_sets_apart():
    gen = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (500, 3, 8, 8), dtype=torch.uint8, generator=gen)
    labels = torch.randint(0, 10, (500,), generator=gen)
    base = data_fingerprint(images, labels, 10)
    assert base == data_fingerprint(images.clone(), labels.clone(), 10)
    assert json.loads(json.dumps(base)) == base and base["images_sampled"] == 64
    assert base["count"] == 500 and base["shape"] == [3, 8, 8]
    relabelled = labels.clone()
    relabelled[123] = (relabelled[123] + 1) % 10
    repainted = images.clone()
    repainted[499, 0, 0, 0] ^= 1  # the last image is always sampled
    variants = {
        "labels_sha256": data_fingerprint(images, relabelled, 10),
        "images_sha256": data_fingerprint(repainted, labels, 10),
        "num_classes": data_fingerprint(images, labels, 100),
        "count": data_fingerprint(images[:499], labels[:499], 10),
    }
    for field, other in variants.items():
        assert other[field] != base[field]
        assert any(line.startswith(f"{field}: ") for line in fingerprint_differences(base, other))
    assert fingerprint_differences(base, dict(base)) == []
    assert data_fingerprint(images[:0], labels[:0], 10)["images_sampled"] == 0
    with pytest.raises(ValueError, match="expected images"):
        data_fingerprint(images[0], labels, 10)


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
