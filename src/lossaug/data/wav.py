"""Reading audio: one file to float samples (``decode_audio``: PCM WAV with the standard library, anything else
through the optional ``soundfile``), band-limited resampling (``resample``), a list of clips to one ``(N,1,T)``
int16 array at one rate and one length (``clips_to_arrays``), and a class-folder tree of clips to an
``AudioDataset`` (``decode_clips``), what the FSDD and audio-folder sources share.
"""

from __future__ import annotations

import functools
import io
import math
import wave
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from lossaug.data.trees import Tree
from lossaug.data.types import AudioDataset, AudioSplit, File, Log
from lossaug.errors import InputError

__all__ = ["check_audio_options", "clips_to_arrays", "decode_audio", "decode_clips", "fit_clip", "resample"]

_CLIP_PERCENTILE = 95  # the default clip length covers this percentile of training clip lengths


def _pcm_to_float(raw: bytes, width: int, channels: int) -> np.ndarray:
    """``(frames, channels)`` float32 in [-1, 1] from little-endian PCM: 8-bit unsigned, 16/24/32-bit signed."""
    raw = raw[: len(raw) - len(raw) % (width * channels)]  # a truncated last frame is dropped
    if width == 1:
        samples = (np.frombuffer(raw, np.uint8).astype(np.float32) - 128) / 128
    elif width == 3:
        b = np.frombuffer(raw, np.uint8).reshape(-1, 3).astype(np.int32)
        value = b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)
        samples = ((value ^ 0x800000) - 0x800000).astype(np.float32) / 2**23  # sign-extend 24 bits
    else:
        samples = np.frombuffer(raw, f"<i{width}").astype(np.float32) / 2 ** (8 * width - 1)
    return samples.reshape(-1, channels)


def _read_with_soundfile(source: Path | bytes, where: str, reason: str) -> tuple[np.ndarray, int]:
    try:
        import soundfile
    except ImportError:
        raise InputError(
            f"cannot read audio file {where}: {reason}; only PCM WAV is read without the optional "
            "'soundfile' package (pip install soundfile)"
        ) from None
    try:
        samples, rate = soundfile.read(
            io.BytesIO(source) if isinstance(source, bytes) else source, dtype="float32", always_2d=True
        )
    except Exception as e:  # libsndfile reports bad files as RuntimeError subclasses, among others
        raise InputError(f"cannot read audio file {where}: {reason}, and soundfile cannot either ({e})") from e
    return samples, int(rate)


def decode_audio(source: str | Path | bytes, where: str | None = None) -> tuple[np.ndarray, int]:
    """``(samples (T,) float32 mono in [-1, 1], sample_rate)`` of one file (a path, as str or Path, or its bytes);
    channels are averaged. ``where`` names the file in errors (default: the path).

    A file that cannot be read, holds no samples, is not audio or has an unsupported sample width raises a
    one-line ValueError naming it."""
    source = Path(source) if isinstance(source, str) else source
    where = where or (str(source) if isinstance(source, Path) else "<bytes>")
    try:
        if (len(source) if isinstance(source, bytes) else source.stat().st_size) == 0:
            raise InputError(f"cannot read audio file {where}: empty file (0 bytes)")
        with wave.open(io.BytesIO(source) if isinstance(source, bytes) else str(source), "rb") as w:
            channels, width, rate = w.getnchannels(), w.getsampwidth(), w.getframerate()
            raw = w.readframes(w.getnframes())
    except OSError as e:
        raise InputError(f"cannot read audio file {where}: {e.strerror or e}") from e
    except (wave.Error, EOFError) as e:
        # Not a PCM WAV the standard library reads: float or extensible WAV, FLAC, ..., or not audio at all.
        reason = f"not a PCM WAV file ({str(e) or 'cut short within its header'})"
        samples, rate = _read_with_soundfile(source, where, reason)
        channels = samples.shape[1]
    else:
        if width not in (1, 2, 3, 4):
            raise InputError(f"cannot read audio file {where}: unsupported sample width {8 * width} bits")
        samples = _pcm_to_float(raw, width, channels)
    if rate <= 0 or channels < 1:
        raise InputError(f"cannot read audio file {where}: bad header ({channels} channels at {rate} Hz)")
    if len(samples) == 0:
        raise InputError(f"cannot read audio file {where}: empty (no samples)")
    return np.ascontiguousarray(samples.mean(axis=1, dtype=np.float32)), rate


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
    clips: list[File], num_train: int, sample_rate: int | None, clip_seconds: float | None, log: Log
) -> tuple[np.ndarray, int]:
    """``(waveforms (N,1,T) int16, sample_rate)`` for ``clips``, the first ``num_train`` being training clips."""
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


def decode_clips(
    name: str,
    classes: tuple[str, ...],
    tree: Tree,
    sample_rate: int | None,
    clip_seconds: float | None,
    where: str,
    log: Log,
) -> AudioDataset:
    """The clips of ``tree`` (label i: ``classes[i]``, a class a split lacks has no clips there) as an
    ``AudioDataset`` at one rate and length (``clips_to_arrays``); ``where`` names the source in messages."""
    clips, labels = {}, {}
    for split in ("train", "test"):
        clips[split] = [clip for c in classes for clip in tree[split].get(c, [])]
        counts = [len(tree[split].get(c, [])) for c in classes]
        labels[split] = torch.from_numpy(np.repeat(np.arange(len(classes), dtype=np.int64), counts))
    num_train = len(clips["train"])
    if num_train == 0:
        raise InputError(f"{where}: no training clips")
    log(f"decoding {num_train + len(clips['test'])} clips from {where}...")
    # One pass over both splits, so the sample-rate check covers every clip.
    arrays, rate = clips_to_arrays(clips["train"] + clips["test"], num_train, sample_rate, clip_seconds, log)
    waveforms = torch.from_numpy(arrays)
    return AudioDataset(
        name=name,
        classes=classes,
        train=AudioSplit(waveforms[:num_train].contiguous(), labels["train"]),
        test=AudioSplit(waveforms[num_train:].contiguous(), labels["test"]),
        sample_rate=rate,
    )
