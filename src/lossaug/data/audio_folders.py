"""Audio folders, ``root/{train,test}/<class>/...`` (or ``root/<class>/...`` split by ``test_fraction``) or an
archive of one (read in memory, member by member, so nothing is extracted), loaded whole into an ``AudioDataset``
of ``(N,1,T)`` int16 waveforms at one sample rate; a class folder's subfolders belong to it.

Clips are read with ``soundfile`` (``wav.decode_audio``: WAV of any width, extensible WAV, FLAC, OGG, AIFF, MP3),
mixed to mono, resampled with ``wav.resample`` (band-limited) and centred in a fixed length, zero-padded or cropped
equally at both ends (``wav.clips_to_arrays``); undecodable clips refuse the load, all listed, or are skipped
(``skip_bad``). torchaudio is not used: its wheels do not load beside this torch build (checked with torchaudio
2.11.1 and torch 2.13.0+cpu: its library needs a CUDA torch). With a ``cache_dir``, decoded arrays are cached
there under a hash of the content and the options, written atomically (``cache``).
"""

from __future__ import annotations

from pathlib import Path

from lossaug.data.archives import ARCHIVE_SUFFIXES, archive_members, archive_stem, file_digest, is_archive_name
from lossaug.data.cache import cached, files_hash
from lossaug.data.split import check_folder_options
from lossaug.data.trees import UNSPLIT, Tree, has_suffix, scan_class_folders, tree_files, tree_from_members
from lossaug.data.types import AUDIO_KIND, AudioDataset, File, FolderOptions, LoadRequest, Log, silent
from lossaug.data.wav import check_audio_options, decode_clips
from lossaug.errors import InputError

__all__ = ["AUDIO_SUFFIXES", "WAV_SUFFIXES", "from_request", "load_audio_folder"]

WAV_SUFFIXES = (".wav", ".wave")
AUDIO_SUFFIXES = (*WAV_SUFFIXES, ".flac", ".ogg", ".oga", ".aif", ".aiff", ".mp3")  # MP3: where libsndfile has it


def _scan_folder(root: Path) -> Tree:
    return scan_class_folders(root, AUDIO_SUFFIXES, File, noun="clip")


def _tree_from_archive(archive: Path) -> Tree:
    """An audio-folder tree from an archive's members, held in memory; one wrapping top folder is allowed."""
    members = ((name, data) for name, data in archive_members(archive) if has_suffix(name.name, AUDIO_SUFFIXES))
    tree = tree_from_members(members, File, str(archive))
    if not tree.get(UNSPLIT) and (not tree.get("train") or not tree.get("test")):
        raise InputError(
            f"archive {archive} has no train/<class>/<clip> and test/<class>/<clip> (or val/), nor <class>/<clip>, "
            f"audio files ({', '.join(AUDIO_SUFFIXES)})"
        )
    return tree


def load_audio_folder(
    root: str | Path,
    *,
    sample_rate: int | None = None,
    clip_seconds: float | None = None,
    cache_dir: str | Path | None = None,
    log: Log | None = None,
    test_fraction: float | None = None,
    split_seed: int = 0,
    skip_bad: bool = False,
) -> AudioDataset:
    """Files under ``root/train/<class>/`` and ``root/test/<class>/`` (or ``val/``), or under ``root/<class>/``
    with ``test_fraction`` of each class split off for testing (``split.split_tree``, by ``split_seed``); class
    i = i-th sorted name. Undecodable clips are an ``InputError`` listing them, or with ``skip_bad`` left out.

    ``root`` may be an archive (.tar, .tar.gz, .tgz, .tar.xz, .zip), read in memory. See the module docstring for
    ``sample_rate``, ``clip_seconds`` and ``cache_dir``.
    """
    root = Path(root)
    cache_dir = None if cache_dir is None else Path(cache_dir)
    say = log or silent
    check_audio_options(sample_rate, clip_seconds)
    check_folder_options(test_fraction, split_seed)
    folder = FolderOptions(test_fraction, split_seed, bool(skip_bad))
    if not root.exists():
        raise FileNotFoundError(f"audio folder not found: {root}")
    if root.is_file() and not is_archive_name(root):
        raise InputError(f"{root} is a file but not an archive ({', '.join(ARCHIVE_SUFFIXES)})")
    name = archive_stem(root) if root.is_file() else root.name
    tree = None if root.is_file() else _scan_folder(root)

    def load() -> AudioDataset:
        full_tree = _tree_from_archive(root) if tree is None else tree
        return decode_clips(name, None, full_tree, sample_rate, clip_seconds, str(root), say, folder)

    def content_hash() -> str:
        if tree is None:
            return file_digest(root, "sha256")
        return files_hash((clip.source for clip in tree_files(tree)), root)

    options = (sample_rate, clip_seconds) + folder.cache_key()  # defaults: the key of earlier versions
    return cached(AUDIO_KIND, cache_dir, name, content_hash, options, load, say)


def from_request(request: LoadRequest) -> AudioDataset:
    """``load_audio_folder`` as ``load_dataset("audio-folder", ...)`` asks for it."""
    path, options = request.audio_path(), request.audio_options()
    if "test_speaker" in options:
        raise InputError("test_speaker applies to dataset 'fsdd' only")
    folder = request.folder
    return load_audio_folder(
        path,
        cache_dir=request.cache_dir,
        log=request.log,
        test_fraction=folder.test_fraction,
        split_seed=folder.split_seed,
        skip_bad=folder.skip_bad,
        **options,
    )
