"""Batched waveform augmentations and their spec parser, for the model's log-mel front end
(``lossaug.models.audio``) and band-limited resampling (``lossaug.data.wav.resample``).

Every augmentation is an op of the one shape of ``lossaug.augment.op`` over a batch ``waveforms (B,C,T)`` (int16 on
the int16 scale, or float in [-1, 1]): its class checks its hyperparameters once, when built, and draws one set of
parameters per clip from an explicit ``generator`` on the batch's device, with no Python loop over clips, through
the pure ``*_params`` and ``apply_*`` functions below (their units are samples, so they stay public for per-clip
oracles); the functional names (``time_shift``, ...) are thin calls to the class. Each returns the input's shape and
dtype; int16 results are rounded and saturated to [-32768, 32767]. The ops are rows of the one table of
``lossaug.augment.table``.

Candidates stay waveforms until the forward pass: ``AudioCNN`` computes log-mel features inside the model, so
SpecAugment-style masks are applied to the waveform in forms that are masks on its log-mel features:

- ``timemask`` zeroes a span of samples. Every STFT frame inside the span is then silent, i.e. at the log floor:
  a time mask on the spectrogram (frames that straddle the span's edges are partly masked).
- ``freqmask`` zeroes the FFT bins of the whole clip between the edges of a random run of mel channels (the
  same HTK mel scale as the front end), a band-stop filter. Channel k of the filterbank is non-zero only between
  edges k and k+2, so zeroing edges ``first`` .. ``first+count+1`` silences channels ``first`` .. ``first+count-1``
  and half of each neighbour, up to the leakage of the STFT's Hann window: measured on white noise at 8 kHz with
  40 mels, the run's inner channels fall by 40-55 dB, its two end channels by about 15 dB (the window's main lobe,
  +-2 bins or +-62 Hz, is as wide as a low mel channel).

SpecAugment fills masks with the mean (zero after its normalisation); here masked cells sit at the log floor, as
silence and the zero padding of short clips do.

``parse_audio_augment("shift,gain,noise")`` builds setting A; options go after a colon: ``"shift:0.1,gain:6"``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import overload

import torch
import torch.nn.functional as F
from torch import Tensor

from lossaug.augment.core import Compose, mixes_targets
from lossaug.augment.op import Op, Shape
from lossaug.augment.spec import KindOps, parse_ops
from lossaug.data.types import AUDIO_KIND
from lossaug.errors import InputError
from lossaug.models.audio import DEFAULT_N_MELS, DEFAULT_SAMPLE_RATE, INT16_SCALE, mel_edges_hz

__all__ = [
    "AUDIO_AUGMENTATIONS",
    "AUDIO_SETTINGS",
    "AdditiveNoise",
    "AudioAugment",
    "FreqMask",
    "RandomGain",
    "SpeedPerturb",
    "TimeMask",
    "TimeShift",
    "additive_noise",
    "apply_freq_mask",
    "apply_gain",
    "apply_noise",
    "apply_shift",
    "apply_speed",
    "apply_time_mask",
    "freq_mask",
    "freq_mask_params",
    "gain_params",
    "noise_params",
    "parse_audio_augment",
    "random_gain",
    "shift_params",
    "speed_params",
    "speed_perturb",
    "time_mask",
    "time_mask_params",
    "time_shift",
]

AUDIO_SETTINGS = {"A": "shift,gain,noise", "B": "shift,gain,noise,timemask,freqmask"}
AUDIO_AUGMENTATIONS = KindOps(AUDIO_KIND)  # the waveform ops of the one table (augment.table): name -> OpRow


def _check_waveforms(waveforms: Tensor, generator: torch.Generator | None) -> None:
    if not isinstance(waveforms, Tensor) or waveforms.dim() != 3:
        shape = tuple(waveforms.shape) if isinstance(waveforms, Tensor) else type(waveforms).__name__
        raise InputError(f"waveforms must be a (B,C,T) tensor, got {shape}")
    if not (waveforms.is_floating_point() or waveforms.dtype == torch.int16):
        raise InputError(f"waveforms must be int16 or floating point, got {waveforms.dtype}")
    if generator is not None and generator.device.type != waveforms.device.type:
        raise InputError(
            f"generator is on {generator.device} but waveforms are on {waveforms.device}; "
            "create the generator on the waveforms' device"
        )


def _working_copy(waveforms: Tensor) -> Tensor:
    """Float samples on the input's own scale: float32 for int16, else the input's dtype."""
    return waveforms.float() if waveforms.dtype == torch.int16 else waveforms


def _like(result: Tensor, waveforms: Tensor) -> Tensor:
    """``result`` in ``waveforms``' dtype; int16 is rounded and saturated, as a recorder would clip."""
    if waveforms.dtype == torch.int16:
        return result.round().clamp(-INT16_SCALE, INT16_SCALE - 1).to(torch.int16)
    return result.to(waveforms.dtype)


def _uniform(batch_size: int, low: float, high: float, device: torch.device, generator) -> Tensor:
    return low + (high - low) * torch.rand(batch_size, device=device, generator=generator)


# ---------------------------------------------------------------- time shift (zero-filled, not circular)


def shift_params(batch_size: int, max_shift: int, *, device: torch.device, generator=None) -> Tensor:
    """``shift (B,)`` int64, uniform in ``[-max_shift, max_shift]`` samples; positive moves the clip later."""
    return torch.randint(-max_shift, max_shift + 1, (batch_size,), device=device, generator=generator)


def apply_shift(waveforms: Tensor, shift: Tensor) -> Tensor:
    """Delay each clip of ``waveforms (B,C,T)`` by ``shift[b]`` samples; samples pushed past an end are dropped
    and the gap is filled with silence (zero-filled: a circular shift would wrap the end of a word to its start)."""
    length = waveforms.shape[-1]
    reach = int(shift.abs().max()) if len(shift) else 0
    # Pad with silence and read a window: 3-4x faster than gather-then-mask (20 ms vs 74 ms for 512 clips of
    # 5360 samples, one thread).
    padded = F.pad(waveforms, (reach, reach))
    index = (reach - shift).view(-1, 1) + torch.arange(length, device=waveforms.device)  # (B,T)
    return padded.gather(2, index.unsqueeze(1).expand_as(waveforms))


def time_shift(waveforms: Tensor, max_fraction: float = 0.1, *, generator: torch.Generator | None = None) -> Tensor:
    """Shift each clip by a random whole number of samples, up to ``max_fraction`` of its length either way."""
    return TimeShift(max_fraction)(waveforms, generator)


# ---------------------------------------------------------------- gain in dB


def gain_params(batch_size: int, max_db: float, *, device: torch.device, generator=None) -> Tensor:
    """``gain_db (B,)`` float32, uniform in ``[-max_db, max_db]``."""
    return _uniform(batch_size, -max_db, max_db, device, generator)


def apply_gain(waveforms: Tensor, gain_db: Tensor) -> Tensor:
    """Scale each clip of ``waveforms (B,C,T)`` by ``10 ** (gain_db[b] / 20)``."""
    x = _working_copy(waveforms)
    factor = torch.pow(10.0, gain_db.float() / 20).view(-1, 1, 1)
    return _like(x * factor.to(x.dtype), waveforms)


def random_gain(waveforms: Tensor, max_db: float = 6.0, *, generator: torch.Generator | None = None) -> Tensor:
    """Amplify or attenuate each clip by a random gain, uniform in ``[-max_db, max_db]`` dB."""
    return RandomGain(max_db)(waveforms, generator)


# ---------------------------------------------------------------- additive white noise at a random SNR


def noise_params(
    shape: tuple[int, int, int], min_snr_db: float, max_snr_db: float, *, device: torch.device, generator=None
) -> tuple[Tensor, Tensor]:
    """``(snr_db (B,), noise (B,C,T))``: SNR uniform in ``[min_snr_db, max_snr_db]``, unit Gaussian noise."""
    snr_db = _uniform(shape[0], min_snr_db, max_snr_db, device, generator)
    return snr_db, torch.randn(shape, device=device, generator=generator)


def apply_noise(waveforms: Tensor, snr_db: Tensor, noise: Tensor) -> Tensor:
    """Add ``noise (B,C,T)`` scaled so that each clip's signal-to-noise power ratio is ``snr_db[b]``.

    Signal power is the mean square over the whole clip, padding included, so in the speech itself the SNR is
    higher by the padding's share; a silent clip stays silent."""
    x = _working_copy(waveforms)
    work = torch.promote_types(x.dtype, torch.float32)  # float32 at least: float16 squares overflow
    power = x.to(work).square().mean(dim=(1, 2))
    scale = torch.sqrt(power / torch.pow(10.0, snr_db.to(work) / 10)).view(-1, 1, 1)
    return _like(x + (scale * noise.to(work)).to(x.dtype), waveforms)


def additive_noise(
    waveforms: Tensor, min_snr_db: float = 10.0, max_snr_db: float = 40.0, *, generator: torch.Generator | None = None
) -> Tensor:
    """Add white Gaussian noise to each clip at a random SNR, uniform in ``[min_snr_db, max_snr_db]`` dB."""
    return AdditiveNoise(min_snr_db, max_snr_db)(waveforms, generator)


# ---------------------------------------------------------------- speed perturbation


def speed_params(batch_size: int, max_change: float, *, device: torch.device, generator=None) -> Tensor:
    """``factor (B,)`` float32, uniform in ``[1 - max_change, 1 + max_change]``; above 1 plays faster."""
    return _uniform(batch_size, 1 - max_change, 1 + max_change, device, generator)


def apply_speed(waveforms: Tensor, factor: Tensor) -> Tensor:
    """Play each clip of ``waveforms (B,C,T)`` ``factor[b]`` times as fast (tempo and pitch, like sox ``speed``),
    about the clip's centre, keeping T samples: a faster clip gains silence at both ends, a slower one loses its
    ends. Output sample n reads the input at ``c + (n - c) * factor`` with ``c = (T-1)/2``, linearly interpolated.

    Linear interpolation, not band-limited: at factors up to 1.1 it folds only the top tenth of the band (3.6-4 kHz
    at 8 kHz), where speech carries little energy, and costs two reads per sample instead of a sinc kernel's ~16.
    """
    batch, channels, length = waveforms.shape
    x = _working_copy(waveforms)
    centre = (length - 1) / 2
    work = torch.promote_types(x.dtype, torch.float32)
    n = torch.arange(length, device=x.device, dtype=work)
    position = centre + (n - centre) * factor.to(work).view(-1, 1) + 1  # (B,T), in the padded clip below
    padded = F.pad(x, (1, 1))  # a zero at each end, so reads just past the clip interpolate towards silence
    valid = (position >= 0) & (position <= length + 1)
    position = position.clamp(0, length + 1)
    left = position.floor().clamp(max=length).long()
    weight = (position - left).to(x.dtype).unsqueeze(1)
    left = left.unsqueeze(1).expand(batch, channels, length)
    out = padded.gather(2, left) * (1 - weight) + padded.gather(2, left + 1) * weight
    return _like(torch.where(valid.unsqueeze(1), out, 0), waveforms)


def speed_perturb(waveforms: Tensor, max_change: float = 0.1, *, generator: torch.Generator | None = None) -> Tensor:
    """Change each clip's speed by a random factor, uniform in ``[1 - max_change, 1 + max_change]``."""
    return SpeedPerturb(max_change)(waveforms, generator)


# ---------------------------------------------------------------- SpecAugment time mask, on the waveform


def _span_params(batch_size: int, size: int, max_width: int, device: torch.device, generator) -> tuple[Tensor, Tensor]:
    """``(start, width)``, each ``(B,)`` int64: width uniform in ``[0, max_width]``, then start uniform over the
    positions where ``[start, start + width)`` fits in ``[0, size)`` (SpecAugment's draw)."""
    width = torch.randint(0, min(max_width, size) + 1, (batch_size,), device=device, generator=generator)
    start = (torch.rand(batch_size, device=device, generator=generator) * (size - width + 1)).long()
    return torch.minimum(start, size - width), width  # minimum: guards against rand() rounding up in float32


def time_mask_params(
    batch_size: int, length: int, max_width: int, *, device: torch.device, generator=None
) -> tuple[Tensor, Tensor]:
    """``(start, width)``, each ``(B,)`` int64, in samples: width uniform in ``[0, max_width]``, start uniform
    over the positions where the span fits in the clip."""
    return _span_params(batch_size, length, max_width, device, generator)


def apply_time_mask(waveforms: Tensor, start: Tensor, width: Tensor) -> Tensor:
    """Zero samples ``[start[b], start[b] + width[b])`` of each clip of ``waveforms (B,C,T)``."""
    n = torch.arange(waveforms.shape[-1], device=waveforms.device)
    inside = (n >= start.view(-1, 1)) & (n < (start + width).view(-1, 1))  # (B,T)
    return torch.where(inside.unsqueeze(1), 0, waveforms)


def time_mask(waveforms: Tensor, max_fraction: float = 0.1, *, generator: torch.Generator | None = None) -> Tensor:
    """Silence one random span per clip, up to ``max_fraction`` of its length: a spectrogram time mask."""
    return TimeMask(max_fraction)(waveforms, generator)


# ---------------------------------------------------------------- SpecAugment frequency mask, as a band-stop filter


def _fft_length(length: int) -> int:
    """The smallest ``n >= length`` of the form 2^a 3^b 5^c: FFT sizes with large prime factors are slow (5360 =
    16 * 5 * 67 took 50 ms per rfft + irfft of 512 clips, 5376 took 25 ms)."""
    n = length
    while True:
        m = n
        for p in (2, 3, 5):
            while m % p == 0:
                m //= p
        if m == 1:
            return n
        n += 1


def freq_mask_params(
    batch_size: int, n_mels: int, max_bands: int, *, device: torch.device, generator=None
) -> tuple[Tensor, Tensor]:
    """``(first, count)``, each ``(B,)`` int64: a run of ``count`` mel channels from ``first``, count uniform in
    ``[0, max_bands]``, first uniform over the positions where the run fits in ``[0, n_mels)``."""
    return _span_params(batch_size, n_mels, max_bands, device, generator)


def apply_freq_mask(
    waveforms: Tensor, first: Tensor, count: Tensor, *, sample_rate: int, n_mels: int = DEFAULT_N_MELS
) -> Tensor:
    """Zero each clip's spectrum between mel edges ``first[b]`` and ``first[b] + count[b] + 1`` (Hz, inclusive),
    which silences mel channels ``first[b]`` .. ``first[b] + count[b] - 1``; ``count[b] == 0`` leaves it as is.

    The spectrum is that of the clip zero-padded to a fast FFT size (at least T), and the filtered clip is cut back
    to its first T samples."""
    length = waveforms.shape[-1]
    if waveforms.numel() == 0:  # MKL's FFT rejects an empty batch
        return waveforms.clone()
    x = _working_copy(waveforms)
    # Edges and bin frequencies in float64, so a bin on an edge (Nyquist, for the top channel) is decided alike
    # on every device.
    edges = mel_edges_hz(n_mels, sample_rate).to(x.device)
    low = edges[first].view(-1, 1, 1)
    high = edges[(first + count + 1).clamp(max=n_mels + 1)].view(-1, 1, 1)
    size = _fft_length(length)
    spectrum = torch.fft.rfft(x.to(torch.promote_types(x.dtype, torch.float32)), n=size)  # (B,C,size//2+1)
    freqs = torch.arange(size // 2 + 1, device=x.device, dtype=torch.float64) * sample_rate / size
    stop = (freqs >= low) & (freqs <= high) & (count > 0).view(-1, 1, 1)
    filtered = torch.fft.irfft(spectrum.masked_fill(stop, 0), n=size)[..., :length]
    return _like(filtered.to(x.dtype), waveforms)


def freq_mask(
    waveforms: Tensor,
    max_bands: int = 8,
    *,
    sample_rate: int = DEFAULT_SAMPLE_RATE,
    n_mels: int = DEFAULT_N_MELS,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Silence a random run of up to ``max_bands`` of the front end's ``n_mels`` mel channels per clip."""
    return FreqMask(max_bands, sample_rate, n_mels)(waveforms, generator)


# ---------------------------------------------------------------- the ops: one class each, checked at construction


class WaveformOp(Op):
    """An op over ``waveforms (B,C,T)``, int16 or floating point."""

    def check_batch(self, waveforms: Tensor, generator: torch.Generator | None) -> None:
        _check_waveforms(waveforms, generator)


@dataclass(frozen=True)
class TimeShift(WaveformOp):
    """Shift each clip by a random whole number of samples, up to ``max_fraction`` of its length either way."""

    max_fraction: float = 0.1

    def check(self) -> None:
        if not 0.0 <= self.max_fraction <= 1.0:
            raise InputError(f"shift max_fraction must be in [0, 1], got {self.max_fraction}")

    def params(self, shape: Shape, device: torch.device, generator: torch.Generator | None) -> Tensor:
        return shift_params(shape[0], round(self.max_fraction * shape[-1]), device=device, generator=generator)

    def apply(self, waveforms: Tensor, shift: Tensor) -> Tensor:
        return apply_shift(waveforms, shift)


@dataclass(frozen=True)
class RandomGain(WaveformOp):
    """Amplify or attenuate each clip by a random gain, uniform in ``[-max_db, max_db]`` dB."""

    max_db: float = 6.0

    def check(self) -> None:
        if not 0.0 <= self.max_db <= 60.0:
            raise InputError(f"gain max_db must be in [0, 60], got {self.max_db}")

    def params(self, shape: Shape, device: torch.device, generator: torch.Generator | None) -> Tensor:
        return gain_params(shape[0], self.max_db, device=device, generator=generator)

    def apply(self, waveforms: Tensor, gain_db: Tensor) -> Tensor:
        return apply_gain(waveforms, gain_db)


@dataclass(frozen=True)
class AdditiveNoise(WaveformOp):
    """Add white Gaussian noise to each clip at a random SNR, uniform in ``[min_snr_db, max_snr_db]`` dB."""

    min_snr_db: float = 10.0
    max_snr_db: float = 40.0

    def check(self) -> None:
        if not self.min_snr_db <= self.max_snr_db:
            raise InputError(f"noise needs min_snr_db <= max_snr_db, got {self.min_snr_db} > {self.max_snr_db}")

    def params(self, shape: Shape, device: torch.device, generator: torch.Generator | None) -> tuple[Tensor, Tensor]:
        batch, channels, length = shape
        return noise_params(
            (batch, channels, length), self.min_snr_db, self.max_snr_db, device=device, generator=generator
        )

    def apply(self, waveforms: Tensor, params: tuple[Tensor, Tensor]) -> Tensor:
        return apply_noise(waveforms, *params)


@dataclass(frozen=True)
class SpeedPerturb(WaveformOp):
    """Change each clip's speed by a random factor, uniform in ``[1 - max_change, 1 + max_change]``."""

    max_change: float = 0.1

    def check(self) -> None:
        if not 0.0 <= self.max_change < 1.0:
            raise InputError(f"speed max_change must be in [0, 1), got {self.max_change}")

    def params(self, shape: Shape, device: torch.device, generator: torch.Generator | None) -> Tensor:
        return speed_params(shape[0], self.max_change, device=device, generator=generator)

    def apply(self, waveforms: Tensor, factor: Tensor) -> Tensor:
        return apply_speed(waveforms, factor)


@dataclass(frozen=True)
class TimeMask(WaveformOp):
    """Silence one random span per clip, up to ``max_fraction`` of its length: a spectrogram time mask."""

    max_fraction: float = 0.1

    def check(self) -> None:
        if not 0.0 <= self.max_fraction <= 1.0:
            raise InputError(f"timemask max_fraction must be in [0, 1], got {self.max_fraction}")

    def params(self, shape: Shape, device: torch.device, generator: torch.Generator | None) -> tuple[Tensor, Tensor]:
        length = shape[-1]
        return time_mask_params(shape[0], length, round(self.max_fraction * length), device=device, generator=generator)

    def apply(self, waveforms: Tensor, span: tuple[Tensor, Tensor]) -> Tensor:
        return apply_time_mask(waveforms, *span)


@dataclass(frozen=True)
class FreqMask(WaveformOp):
    """Silence a random run of up to ``max_bands`` of the front end's ``n_mels`` mel channels per clip."""

    max_bands: int = 8
    sample_rate: int = DEFAULT_SAMPLE_RATE
    n_mels: int = DEFAULT_N_MELS

    def check(self) -> None:
        if not 0 <= self.max_bands <= self.n_mels:
            raise InputError(f"freqmask max_bands must be in [0, n_mels={self.n_mels}], got {self.max_bands}")

    def params(self, shape: Shape, device: torch.device, generator: torch.Generator | None) -> tuple[Tensor, Tensor]:
        return freq_mask_params(shape[0], self.n_mels, self.max_bands, device=device, generator=generator)

    def apply(self, waveforms: Tensor, run: tuple[Tensor, Tensor]) -> Tensor:
        return apply_freq_mask(waveforms, *run, sample_rate=self.sample_rate, n_mels=self.n_mels)


# ---------------------------------------------------------------- the spec: rows of the one table (augment.table)


def parse_audio_augment(spec: str, *, sample_rate: int = DEFAULT_SAMPLE_RATE, n_mels: int = DEFAULT_N_MELS) -> Compose:
    """Build a ``Compose`` of waveform ops from a spec such as ``"shift,gain,noise"`` or ``"shift:0.2,noise:5"``.

    Options after a colon: ``shift`` the largest shift as a fraction of the clip (0.1), ``gain`` the largest gain
    in dB either way (6), ``noise`` the lowest SNR in dB (10; the highest is 40, or the lowest if above), ``speed``
    the largest relative change (0.1), ``timemask`` the longest mask as a fraction of the clip (0.1), ``freqmask``
    the most mel channels masked (8), ``mixup`` its alpha (0.2: clips mixed as images are, with soft targets).
    ``sample_rate`` and ``n_mels`` must match the model's front end, so that
    ``freqmask`` masks whole mel channels. An empty spec (or ``"none"``) is the identity. Each op checks its option
    when it is built, so a bad option fails at parse time, not at the first training step.
    """
    from lossaug.kinds import AUDIO  # lossaug.kinds imports this module

    return parse_ops(spec, AUDIO.name, label="audio augmentation", sample_rate=sample_rate, n_mels=n_mels)


def parse_audio_spec(spec: str, sample_rate: int | None) -> AudioAugment:
    """``parse_augment`` of an audio spec: ``parse_audio_augment``'s ops at ``sample_rate`` (None: the default),
    taking ``(B,T)`` as well as ``(B,C,T)`` waveforms."""
    rate = {} if sample_rate is None else {"sample_rate": sample_rate}
    return AudioAugment(parse_audio_augment(spec, **rate))


@dataclass(frozen=True)
class AudioAugment:
    """Waveform ops (a ``Compose``) that also take mono ``waveforms (B,T)``: a channel axis is added for the ops
    and removed after; ``(B,C,T)`` passes as it is. What ``parse_augment`` builds for an audio spec, so that
    ``LossAwareAugment("shift,gain,noise", sample_rate=16000)`` takes the ``(B,T)`` batches of audio loaders."""

    augment: Compose

    @property
    def mixes_targets(self) -> bool:
        return mixes_targets(self.augment)

    @overload
    def __call__(self, waveforms: Tensor, generator: torch.Generator | None = None, targets: None = None) -> Tensor: ...

    @overload
    def __call__(
        self, waveforms: Tensor, generator: torch.Generator | None, targets: Tensor
    ) -> tuple[Tensor, Tensor]: ...

    def __call__(
        self, waveforms: Tensor, generator: torch.Generator | None = None, targets: Tensor | None = None
    ) -> Tensor | tuple[Tensor, Tensor]:
        mono = isinstance(waveforms, Tensor) and waveforms.dim() == 2
        batch = waveforms.unsqueeze(1) if mono else waveforms
        if targets is None:
            out = self.augment(batch, generator)
            return out.squeeze(1) if mono else out
        out, mixed = self.augment(batch, generator, targets)
        return (out.squeeze(1) if mono else out), mixed
