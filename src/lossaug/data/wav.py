"""Reading audio: one file to float samples (``decode_audio``, through ``soundfile``/libsndfile: WAV of every PCM
and float width and the extensible header, FLAC, OGG, AIFF, MP3 where its libsndfile has it), band-limited
resampling (``resample``), a list of clips to one ``(N,1,T)`` int16 array at one rate and one length
(``clips_to_arrays``), and a class-folder tree of clips to an ``AudioDataset`` (``decode_clips``, undecodable clips
refused or skipped as ``badfiles`` says), what the FSDD and audio-folder sources share.
"""

from __future__ import annotations

import functools
import io
import math
from pathlib import Path

import numpy as np
import soundfile
import torch
import torch.nn.functional as F
from torch import Tensor

from lossaug.data.badfiles import decode_tree
from lossaug.data.split import resolve_split
from lossaug.data.trees import Tree, check_classes, tree_files
from lossaug.data.types import AUDIO_KIND, AudioDataset, AudioSplit, File, FolderOptions, Log
from lossaug.errors import InputError

__all__ = ["check_audio_options", "clips_to_arrays", "decode_audio", "decode_clips", "fit_clip", "resample"]

_CLIP_PERCENTILE = 95  # the default clip length covers this percentile of training clip lengths


def decode_audio(source: str | Path | bytes, where: str | None = None) -> tuple[np.ndarray, int]:
    """``(samples (T,) float32 mono in [-1, 1], sample_rate)`` of one file (a path, as str or Path, or its bytes);
    channels are averaged. ``where`` names the file in errors (default: the path).

    Read with ``soundfile`` (libsndfile), whatever the container says: WAV of any PCM or float width, with the
    plain or the extensible header (sox's 24-bit output), FLAC, OGG/Vorbis, AIFF, MP3 where libsndfile has it. A
    file that cannot be read, holds no samples or is not audio raises a one-line ``InputError`` naming it."""
    source = Path(source) if isinstance(source, str) else source
    where = where or (str(source) if isinstance(source, Path) else "<bytes>")
    try:
        size = len(source) if isinstance(source, bytes) else source.stat().st_size
    except OSError as e:
        raise InputError(f"cannot read audio file {where}: {e.strerror or e}") from e
    if size == 0:
        raise InputError(f"cannot read audio file {where}: empty file (0 bytes)")
    try:
        samples, rate = soundfile.read(
            io.BytesIO(source) if isinstance(source, bytes) else str(source), dtype="float32", always_2d=True
        )
    except (RuntimeError, ValueError, TypeError, EOFError) as e:  # libsndfile's reports on a malformed file
        # LibsndfileError's error_string is libsndfile's own words, without "Error opening <the file>: ".
        raise InputError(f"cannot read audio file {where}: {getattr(e, 'error_string', None) or e}") from e
    except OSError as e:  # not found, a folder, no permission
        raise InputError(f"cannot read audio file {where}: {e.strerror or e}") from e
    if rate <= 0 or samples.shape[1] < 1:
        raise InputError(f"cannot read audio file {where}: bad header ({samples.shape[1]} channels at {rate} Hz)")
    if len(samples) == 0:
        raise InputError(f"cannot read audio file {where}: empty (no samples)")
    return np.ascontiguousarray(samples.mean(axis=1, dtype=np.float32)), int(rate)


@functools.lru_cache(maxsize=16)
def _sinc_kernel(orig: int, new: int, zero_crossings: int, rolloff: float) -> tuple[Tensor, int]:
    """``(kernel (new,1,L) float32, width)``: one Hann-windowed sinc low-pass filter per output phase."""
    cutoff = min(orig, new) * rolloff  # in cycles per gcd-period; the pass band ends at cutoff / 2
    width = math.ceil(zero_crossings * orig / cutoff)  # input samples either side of an output sample
    offsets = torch.arange(-width, width + orig, dtype=torch.float64) / orig  # input times from a frame's start
    t = (offsets.view(1, -1) - torch.arange(new, dtype=torch.float64).view(-1, 1) / new) * cutoff  # (new,L)
    t = t.clamp(-zero_crossings, zero_crossings)
    window = torch.cos(t * math.pi / zero_crossings / 2) ** 2
    sinc = torch.where(t == 0, torch.ones_like(t), torch.sin(math.pi * t) / (math.pi * t).where(t != 0, 1.0))
    return (sinc * window * cutoff / orig).to(torch.float32).unsqueeze(1), width


def resample(
    waveforms: Tensor, orig_rate: int, new_rate: int, *, zero_crossings: int = 6, rolloff: float = 0.99
) -> Tensor:
    """``waveforms (...,T)`` float at ``orig_rate`` Hz resampled to ``new_rate``: ``(..., ceil(T*new/orig))``.

    Band-limited polyphase resampling with a Hann-windowed sinc (the method of torchaudio's default
    ``sinc_interp_hann``, written here because torchaudio's wheels do not load beside this torch): the rates are
    reduced by their gcd to ``orig`` in and ``new`` out per period, and one strided convolution applies ``new``
    filters, one per output phase, each spanning ``zero_crossings`` zero crossings of a low-pass at ``rolloff``
    times the lower Nyquist frequency. The clip is zero-padded at both ends.
    """
    if orig_rate <= 0 or new_rate <= 0:
        raise InputError(f"sample rates must be positive, got {orig_rate} -> {new_rate}")
    if not waveforms.is_floating_point():
        raise InputError(f"resample needs floating-point waveforms, got {waveforms.dtype}")
    if orig_rate == new_rate:
        return waveforms.clone()
    gcd = math.gcd(orig_rate, new_rate)
    orig, new = orig_rate // gcd, new_rate // gcd
    *batch, length = waveforms.shape
    rows = waveforms.reshape(-1, length)
    width = math.ceil(zero_crossings * orig / (min(orig, new) * rolloff))
    if new * (2 * width + orig) > _KERNEL_ELEMENTS:  # rates sharing no factor (8001 Hz): one filter per output
        return _resample_direct(rows, orig, new, zero_crossings, rolloff).reshape(*batch, -1)
    kernel, width = _sinc_kernel(orig, new, zero_crossings, rolloff)
    x = F.pad(rows.unsqueeze(1), (width, width + orig))
    phases = F.conv1d(x, kernel.to(device=x.device, dtype=x.dtype), stride=orig)  # (N,new,frames)
    out = phases.transpose(1, 2).reshape(x.shape[0], -1)[:, : math.ceil(new * length / orig)]
    return out.reshape(*batch, -1)


# The polyphase kernel holds (new phases x taps) weights, new x (2 * width + orig) for rates reduced to orig:new;
# for rates that share no factor (8001 -> 16000 Hz) that is the product of the rates (3.4 GB was seen). Beyond this
# many weights (4 MiB of float32) each output's filter is computed where it is used instead.
_KERNEL_ELEMENTS = 1 << 20
_CHUNK_ELEMENTS = 1 << 21  # gathered input samples per chunk of outputs in _resample_direct (8 MiB of float32)


def _resample_direct(rows: Tensor, orig: int, new: int, zero_crossings: int, rolloff: float) -> Tensor:
    """``rows (N,T)`` at ``orig`` resampled to ``new`` (rates reduced by their gcd): ``(N, ceil(T*new/orig))``.

    The same Hann-windowed sinc as the polyphase path, evaluated per output sample: output ``j`` sits at input time
    ``t = j*orig/new`` and sums the input within ``width = ceil(zero_crossings / r)`` samples of it, weighted by
    ``r sinc(r d) cos^2(pi r d / (2 zero_crossings))`` at distance ``d`` (``r``: the cutoff in cycles per input
    sample, twice). Memory is bounded by ``_CHUNK_ELEMENTS`` per chunk whatever the rates; time is linear in the
    output length times ``2 * width``."""
    r = min(orig, new) * rolloff / orig
    width = math.ceil(zero_crossings / r)
    count, length = rows.shape
    out_length = math.ceil(new * length / orig)
    taps = torch.arange(-width, width + 2, device=rows.device)  # input index minus floor(t)
    padded = F.pad(rows, (width + 1, width + 2))  # input k is padded[k + width + 1]
    out = rows.new_empty(count, out_length)
    chunk = max(1, _CHUNK_ELEMENTS // (count * len(taps)))
    for start in range(0, out_length, chunk):
        j = torch.arange(start, min(start + chunk, out_length), device=rows.device, dtype=torch.int64)
        base = j * orig // new  # floor(t), exact in integers
        frac = (j * orig - base * new).to(torch.float64) / new  # t - floor(t), in [0, 1)
        d = ((frac.view(-1, 1) - taps.view(1, -1)) * r).clamp(-zero_crossings, zero_crossings)  # (C,taps)
        weights = (torch.sinc(d) * torch.cos(d * math.pi / zero_crossings / 2) ** 2 * r).to(rows.dtype)
        gathered = padded[:, base.view(-1, 1) + taps.view(1, -1) + width + 1]  # (N,C,taps)
        out[:, start : start + len(j)] = (gathered * weights).sum(-1)
    return out


def _resolve_rate(rates: list[int], clips: list[File], sample_rate: int | None) -> int:
    if sample_rate is not None:
        return sample_rate
    distinct = sorted(set(rates))
    if len(distinct) == 1:
        return distinct[0]
    first = {rate: clips[rates.index(rate)].where for rate in distinct[:2]}
    examples = ", ".join(f"{where} at {rate} Hz" for rate, where in first.items())
    raise InputError(
        f"clips have different sample rates ({', '.join(map(str, distinct))} Hz; e.g. {examples}); "
        "pass sample_rate (--sample-rate) to resample them all to one"
    )


def fit_clip(samples: np.ndarray, length: int) -> np.ndarray:
    """``samples (T,)`` float in [-1, 1] as ``(length,)`` int16, centred: padded or cropped equally at both ends."""
    ints = np.clip(np.round(samples * 32768), -32768, 32767).astype(np.int16)
    out = np.zeros(length, dtype=np.int16)
    if len(ints) >= length:
        start = (len(ints) - length) // 2
        out[:] = ints[start : start + length]
    else:
        start = (length - len(ints)) // 2
        out[start : start + len(ints)] = ints
    return out


def clips_to_arrays(
    clips: list[File],
    num_train: int,
    sample_rate: int | None,
    clip_seconds: float | None,
    log: Log,
    decoded: list[tuple[np.ndarray, int]] | None = None,
) -> tuple[np.ndarray, int]:
    """``(waveforms (N,1,T) int16, sample_rate)`` for ``clips``, the first ``num_train`` being training clips;
    ``decoded``: their ``decode_audio`` results when already decoded."""
    if decoded is None:
        decoded = [decode_audio(clip.source, clip.where) for clip in clips]
    rates = [rate for _, rate in decoded]
    rate = _resolve_rate(rates, clips, sample_rate)
    if any(r != rate for r in rates):
        log(f"resampling clips from {', '.join(map(str, sorted(set(rates) - {rate})))} Hz to {rate} Hz")
    signals = [samples if r == rate else resample(torch.from_numpy(samples), r, rate).numpy() for samples, r in decoded]
    lengths = np.array([len(s) for s in signals])
    if clip_seconds is None:
        # Rounded up to 10 ms, so the chosen length reads well and still covers the percentile.
        clip_seconds = math.ceil(np.percentile(lengths[:num_train], _CLIP_PERCENTILE) / rate * 100) / 100
        reason = f"enough for the {_CLIP_PERCENTILE}th percentile of training clips"
    else:
        reason = "as given"
    length = max(1, round(clip_seconds * rate))
    cropped_train = int((lengths[:num_train] > length).sum())
    cropped_test = int((lengths[num_train:] > length).sum())
    log(
        f"clip length {clip_seconds:g} s ({length} samples at {rate} Hz), {reason}; cropped {cropped_train} of "
        f"{num_train} train and {cropped_test} of {len(clips) - num_train} test clips, padded the rest"
    )
    return np.stack([fit_clip(s, length) for s in signals])[:, None, :], rate


def check_audio_options(sample_rate: int | None, clip_seconds: float | None) -> None:
    """``sample_rate`` a positive int (Hz) or None, ``clip_seconds`` a positive number or None; else an
    ``InputError`` naming the value."""
    if sample_rate is not None and (
        isinstance(sample_rate, bool) or not isinstance(sample_rate, int) or sample_rate < 1
    ):
        raise InputError(f"sample_rate must be a positive int (Hz) or None, got {sample_rate!r}")
    if clip_seconds is not None and not (isinstance(clip_seconds, (int, float)) and 0 < clip_seconds < math.inf):
        raise InputError(f"clip_seconds must be a positive number or None, got {clip_seconds!r}")


def _decode_file(clip: File) -> tuple[np.ndarray, int]:
    return decode_audio(clip.source, clip.where)


def decode_clips(
    name: str,
    classes: tuple[str, ...] | None,
    tree: Tree,
    sample_rate: int | None,
    clip_seconds: float | None,
    where: str,
    log: Log,
    options: FolderOptions | None = None,
) -> AudioDataset:
    """The clips of ``tree`` (label i: ``classes[i]``, a class a split lacks has no clips there; None: the tree's
    classes, checked) as an ``AudioDataset`` at one rate and length (``clips_to_arrays``); ``where`` names the
    source in messages. ``options``: an unsplit tree's split and whether to skip undecodable clips."""
    options = options or FolderOptions()
    tree, split = resolve_split(tree, options.test_fraction, options.split_seed, where)
    if classes is None:
        classes = check_classes(tree, where)
    tree = {s: {c: tree[s].get(c, []) for c in classes} for s in ("train", "test")}  # every class, in both splits
    count = sum(len(files) for split_files in tree.values() for files in split_files.values())
    if not any(tree["train"].values()):
        raise InputError(f"{where}: no training clips")
    log(f"decoding {count} clips from {where}...")
    decoded, tree, skipped = decode_tree(tree, _decode_file, options.skip_bad, AUDIO_KIND, log)
    label = {c: i for i, c in enumerate(classes)}
    labels = {
        split_name: torch.tensor(
            [label[c] for c in sorted(tree[split_name]) for _ in tree[split_name][c]], dtype=torch.int64
        )
        for split_name in ("train", "test")
    }
    num_train = len(labels["train"])
    # One pass over both splits, in load order (as decoded), so the sample-rate check covers every clip.
    all_clips = list(tree_files(tree))
    arrays, rate = clips_to_arrays(all_clips, num_train, sample_rate, clip_seconds, log, decoded)
    waveforms = torch.from_numpy(arrays)
    return AudioDataset(
        name=name,
        classes=classes,
        train=AudioSplit(waveforms[:num_train].contiguous(), labels["train"]),
        test=AudioSplit(waveforms[num_train:].contiguous(), labels["test"]),
        sample_rate=rate,
        skipped=skipped,
        split=None if split is None else split.counted(tree).as_dict(),
    )
