"""Tests for the audio parts: waveform augmentations (lossaug.augment.audio), resampling (lossaug.data.wav), the
log-mel front end and AudioCNN (lossaug.models.audio), and the audio loaders of lossaug.data (FSDD and audio
folders). Every WAV file is written here with the standard library's ``wave``."""

from __future__ import annotations

import hashlib
import importlib.util
import math
import struct
import tarfile
import wave
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

import lossaug.augment.audio as A
import lossaug.data.wav as W
import lossaug.models.audio as M
from lossaug.data import AudioDataset, decode_audio, load_audio_folder, load_fsdd
from lossaug.selection import make_candidates

SHARED_FSDD = Path(__file__).resolve().parents[2] / "shared" / "data" / "fsdd.tar.xz"


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


AUGMENTS = {
    "shift": lambda x, g: A.time_shift(x, 0.2, generator=g),
    "gain": lambda x, g: A.random_gain(x, 6.0, generator=g),
    "noise": lambda x, g: A.additive_noise(x, 5.0, 30.0, generator=g),
    "speed": lambda x, g: A.speed_perturb(x, 0.1, generator=g),
    "timemask": lambda x, g: A.time_mask(x, 0.3, generator=g),
    "freqmask": lambda x, g: A.freq_mask(x, 10, generator=g),
    "setting_A": A.parse_audio_augment(A.AUDIO_SETTINGS["A"]),
    "setting_B": A.parse_audio_augment(A.AUDIO_SETTINGS["B"]),
    "shift_speed_masks": A.parse_audio_augment("shift,speed,timemask,freqmask"),
}


def random_waveforms(batch: int, dtype: torch.dtype, length: int = 800, seed: int = 0) -> torch.Tensor:
    """Loud-ish noise bursts in (B,1,T): int16 on its own scale, floats in [-1, 1]."""
    x = (torch.randn(batch, 1, length, generator=gen(seed)) * 4000).round().clamp(-32768, 32767)
    return x.to(torch.int16) if dtype == torch.int16 else (x / 32768).to(dtype)


@pytest.mark.parametrize("dtype", [torch.int16, torch.float32])
@pytest.mark.parametrize("name", AUGMENTS)
class TestContract:
    def test_shape_and_dtype_kept(self, name, dtype):
        x = random_waveforms(8, dtype)
        out = AUGMENTS[name](x, gen(1))
        assert out.shape == x.shape and out.dtype == dtype

    def test_same_seed_same_output_different_seed_differs(self, name, dtype):
        x = random_waveforms(16, dtype)
        first, again = AUGMENTS[name](x, gen(1)), AUGMENTS[name](x, gen(1))
        assert torch.equal(first, again)
        assert not torch.equal(first, AUGMENTS[name](x, gen(2)))

    def test_empty_batch(self, name, dtype):
        x = random_waveforms(0, dtype)
        assert AUGMENTS[name](x, gen(1)).shape == (0, 1, 800)

    def test_each_clip_draws_its_own_parameters(self, name, dtype):
        x = random_waveforms(1, dtype).expand(32, -1, -1).contiguous()
        out = AUGMENTS[name](x, gen(3))
        assert len({tuple(row.flatten().tolist()) for row in out}) > 1, "one draw for the whole batch"

    def test_input_not_modified(self, name, dtype):
        x = random_waveforms(8, dtype)
        before = x.clone()
        AUGMENTS[name](x, gen(1))
        assert torch.equal(x, before)

    def test_candidates_through_make_candidates(self, name, dtype):
        x = random_waveforms(4, dtype)
        candidates = make_candidates(x, AUGMENTS[name], 3, generator=gen(5))
        assert candidates.shape == (4, 3, 1, 800) and candidates.dtype == dtype
        assert not torch.equal(candidates[:, 0], candidates[:, 1])


def test_int16_and_float_agree_up_to_rounding():
    """The same draws on int16 and on float input give the same clip, up to int16 rounding (and saturation)."""
    x = random_waveforms(16, torch.int16)
    for name in ("shift", "gain", "noise", "speed", "timemask", "freqmask"):
        as_int = AUGMENTS[name](x, gen(4)).float()
        as_float = AUGMENTS[name](x.float() / 32768, gen(4)) * 32768
        assert (as_int - as_float.clamp(-32768, 32767)).abs().max() <= 0.5 + 1e-3, name


# ---------------------------------------------------------------- oracles: batched == per-clip loop


def test_shift_matches_per_clip_loop():
    x = random_waveforms(30, torch.int16)
    shift = A.shift_params(30, 200, device=x.device, generator=gen(5))
    batched = A.apply_shift(x, shift)
    for b in range(30):
        s, expected = int(shift[b]), torch.zeros_like(x[b])
        if s >= 0:
            expected[:, s:] = x[b, :, : 800 - s]
        else:
            expected[:, : 800 + s] = x[b, :, -s:]
        assert torch.equal(batched[b], expected), b


def test_gain_matches_per_clip_loop():
    x = random_waveforms(20, torch.float64)
    gain_db = A.gain_params(20, 12.0, device=x.device, generator=gen(5))
    batched = A.apply_gain(x, gain_db)
    for b in range(20):
        assert torch.allclose(batched[b], x[b] * 10 ** (float(gain_db[b]) / 20)), b


def test_noise_matches_per_clip_loop_and_reaches_the_snr():
    x = random_waveforms(20, torch.float64, length=20_000)
    snr_db, noise = A.noise_params((20, 1, 20_000), 0.0, 30.0, device=x.device, generator=gen(5))
    batched = A.apply_noise(x, snr_db, noise)
    for b in range(20):
        power = float(x[b].square().mean())
        expected = x[b] + math.sqrt(power / 10 ** (float(snr_db[b]) / 10)) * noise[b].double()
        assert torch.allclose(batched[b], expected), b
        measured = 10 * math.log10(power / float((batched[b] - x[b]).square().mean()))
        assert abs(measured - float(snr_db[b])) < 0.2, b  # 20k Gaussian samples: power within ~1%


def test_speed_matches_np_interp():
    x = random_waveforms(20, torch.float64)
    factor = A.speed_params(20, 0.1, device=x.device, generator=gen(5))
    batched = A.apply_speed(x, factor)
    grid, centre = np.arange(-1, 801), 399.5
    for b in range(20):
        samples = np.concatenate([[0.0], x[b, 0].numpy(), [0.0]])  # silence just outside the clip
        position = centre + (np.arange(800) - centre) * float(factor[b])
        expected = np.interp(position, grid, samples, left=0.0, right=0.0)
        assert np.allclose(batched[b, 0].numpy(), expected, atol=1e-6), b


def test_speed_stretches_a_tone():
    rate, length = 8000, 8000
    tone = torch.sin(2 * math.pi * 500 * torch.arange(length) / rate).view(1, 1, -1)
    faster = A.apply_speed(tone, torch.tensor([1.1]))[0, 0, 2000:6000]
    peak_hz = torch.fft.rfft(faster).abs().argmax().item() * rate / 4000
    assert abs(peak_hz - 550) <= 2  # pitch rises with speed, as sox's `speed`


def test_time_mask_matches_per_clip_loop():
    x = random_waveforms(30, torch.int16)
    start, width = A.time_mask_params(30, 800, 300, device=x.device, generator=gen(5))
    batched = A.apply_time_mask(x, start, width)
    for b in range(30):
        expected = x[b].clone()
        expected[:, int(start[b]) : int(start[b] + width[b])] = 0
        assert torch.equal(batched[b], expected), b


@pytest.mark.parametrize("length,fft_length", [(1000, 1000), (1072, 1080)])  # 1072 = 16 * 67: padded to 2^3 3^3 5
def test_freq_mask_matches_per_clip_numpy_band_stop(length, fft_length):
    x = random_waveforms(12, torch.float64, length=length)
    first, count = A.freq_mask_params(12, 40, 10, device=x.device, generator=gen(5))
    batched = A.apply_freq_mask(x, first, count, sample_rate=8000, n_mels=40)
    edges = M.mel_edges_hz(40, 8000).numpy()
    freqs = np.arange(fft_length // 2 + 1) * 8000 / fft_length
    for b in range(12):
        spectrum = np.fft.rfft(x[b, 0].numpy(), n=fft_length)
        if count[b] > 0:
            low, high = edges[int(first[b])], edges[int(first[b] + count[b] + 1)]
            spectrum[(freqs >= low) & (freqs <= high)] = 0
        expected = np.fft.irfft(spectrum, n=fft_length)[:length]
        assert np.allclose(batched[b, 0].numpy(), expected, atol=1e-6), b


def test_freq_mask_silences_its_mel_channels():
    """The band-stop on the waveform is a frequency mask on the front end's log-mel features."""
    noise = torch.randn(1, 1, 8000, generator=gen(0)) * 0.1
    masked = A.apply_freq_mask(noise, torch.tensor([12]), torch.tensor([6]), sample_rate=8000)
    front_end = M.LogMel(8000)
    drop_db = 10 / math.log(10) * (front_end(noise) - front_end(masked))[0, 0, :, 5:-5].mean(-1)
    # Inner channels of the run fall by 40-55 dB; its ends by ~15 dB (the STFT window's leakage from outside).
    assert (drop_db[13:17] > 35).all() and (drop_db[[12, 17]] > 10).all(), drop_db[12:18]
    assert (drop_db[:10].abs() < 0.5).all() and (drop_db[20:].abs() < 0.5).all()  # channels away: untouched


# ---------------------------------------------------------------- statistics of the parameters


def test_shift_offsets_are_uniform():
    shift = A.shift_params(22_000, 5, device=torch.device("cpu"), generator=gen(0))
    counts = torch.bincount(shift + 5, minlength=11).float()
    assert counts.numel() == 11 and ((counts - 2000) ** 2 / 2000).sum() < 29.6  # chi-square, df=10, p=0.001


def test_span_params_fit_and_cover_every_width():
    start, width = A.time_mask_params(20_000, 50, 10, device=torch.device("cpu"), generator=gen(0))
    assert int(start.min()) == 0 and int((start + width).max()) == 50 and bool(((start + width) <= 50).all())
    assert torch.bincount(width, minlength=11).min() > 1500  # 11 widths, ~1818 each


def test_gain_and_speed_ranges():
    gain = A.gain_params(10_000, 6.0, device=torch.device("cpu"), generator=gen(0))
    factor = A.speed_params(10_000, 0.1, device=torch.device("cpu"), generator=gen(0))
    assert -6 <= float(gain.min()) < -5.9 and 5.9 < float(gain.max()) <= 6
    assert 0.9 <= float(factor.min()) < 0.901 and 1.099 < float(factor.max()) <= 1.1


# ---------------------------------------------------------------- spec parser and errors


def test_parse_audio_augment_settings_and_options():
    assert A.parse_audio_augment("shift,gain,noise").augments == (A.TimeShift(), A.RandomGain(), A.AdditiveNoise())
    parsed = A.parse_audio_augment(
        "shift:0.2, gain:3, noise:5, speed:0.05, timemask:0.2, freqmask:4", sample_rate=16000
    )
    assert parsed.augments == (
        A.TimeShift(0.2),
        A.RandomGain(3.0),
        A.AdditiveNoise(5.0, 40.0),
        A.SpeedPerturb(0.05),
        A.TimeMask(0.2),
        A.FreqMask(4, 16000, 40),
    )
    assert A.parse_audio_augment("noise:50").augments == (A.AdditiveNoise(50.0, 50.0),)
    assert A.parse_audio_augment("").augments == () == A.parse_audio_augment("none").augments


@pytest.mark.parametrize(
    "spec,match",
    [
        ("shift,reverb", "unknown audio augmentation 'reverb'"),
        ("gain:x", "'x'"),
        ("speed:1.5", "max_change must be in"),
        ("freqmask:50", "n_mels=40"),
        ("shift:2", "max_fraction must be in"),
    ],
)
def test_parse_audio_augment_errors_name_the_culprit(spec, match):
    with pytest.raises(ValueError, match=match):
        A.parse_audio_augment(spec)


@pytest.mark.parametrize(
    "call,match",
    [
        (lambda x: A.time_shift(x[0], 0.1), r"\(B,C,T\)"),
        (lambda x: A.random_gain(x.to(torch.int32), 6), "int16 or floating point"),
        (lambda x: A.additive_noise(x, 30, 10), "min_snr_db <= max_snr_db"),
        (lambda x: A.time_mask(x, -0.1), "max_fraction"),
        (lambda x: A.random_gain(x.to("meta"), 6, generator=gen(0)), "generator is on cpu"),
    ],
)
def test_bad_arguments_raise_value_error(call, match):
    with pytest.raises(ValueError, match=match):
        call(random_waveforms(2, torch.float32))


@pytest.mark.parametrize(
    "build,call",
    [
        (lambda: A.TimeShift(2.0), lambda x: A.time_shift(x, 2.0)),
        (lambda: A.RandomGain(61.0), lambda x: A.random_gain(x, 61.0)),
        (lambda: A.AdditiveNoise(30.0, 10.0), lambda x: A.additive_noise(x, 30.0, 10.0)),
        (lambda: A.SpeedPerturb(1.0), lambda x: A.speed_perturb(x, 1.0)),
        (lambda: A.TimeMask(-0.1), lambda x: A.time_mask(x, -0.1)),
        (lambda: A.FreqMask(50), lambda x: A.freq_mask(x, 50)),
    ],
)
def test_the_ops_refuse_bad_options_when_built_as_their_functions_do(build, call):
    with pytest.raises(ValueError) as refused_by_class:  # at construction: the holders once took any value
        build()
    with pytest.raises(ValueError) as refused_by_function:
        call(random_waveforms(2, torch.float32))
    assert str(refused_by_function.value) == str(refused_by_class.value)


# ---------------------------------------------------------------- resampling


def tone(hz: float, rate: int, seconds: float = 1.0) -> torch.Tensor:
    return torch.sin(2 * math.pi * hz * torch.arange(round(rate * seconds), dtype=torch.float64) / rate)


@pytest.mark.parametrize("orig,new", [(16000, 8000), (8000, 16000), (44100, 8000), (8000, 11025)])
def test_resample_keeps_a_tone_in_the_pass_band(orig, new):
    out = W.resample(tone(700, orig), orig, new)
    assert out.shape == (new,)
    margin = new // 50  # the filter's reach at the zero-padded ends
    assert (out - tone(700, new))[margin:-margin].abs().max() < 2e-3


def test_resample_removes_what_the_new_rate_cannot_hold():
    out = W.resample(tone(6000, 16000), 16000, 8000)  # 6 kHz is above the new 4 kHz Nyquist
    assert out[200:-200].abs().max() < 0.01  # a naive decimation would alias it to a full-scale 2 kHz tone


def test_resample_batches_and_identity():
    x = torch.randn(3, 2, 1000, generator=gen(0))
    out = W.resample(x, 8000, 12000)
    assert out.shape == (3, 2, 1500)
    assert torch.allclose(out[1, 0], W.resample(x[1, 0], 8000, 12000), atol=1e-6)
    assert torch.equal(W.resample(x, 8000, 8000), x)
    with pytest.raises(ValueError, match="floating-point"):
        W.resample(x.to(torch.int16), 8000, 16000)


# ---------------------------------------------------------------- front end against a reference computed another way


def reference_mel_matrix(n_fft: int, n_mels: int, rate: int) -> np.ndarray:
    """(n_fft//2+1, n_mels): HTK triangles, built one filter and one bin at a time."""

    def mel(hz):
        return 1127.0 * math.log(1 + hz / 700)  # 2595 log10 = 1127 ln

    def hz(m):
        return 700 * (math.exp(m / 1127.0) - 1)

    top = mel(rate / 2)
    edges = [hz(top * i / (n_mels + 1)) for i in range(n_mels + 2)]
    matrix = np.zeros((n_fft // 2 + 1, n_mels))
    for k in range(n_fft // 2 + 1):
        f = k * rate / n_fft
        for m in range(n_mels):
            lo, mid, hi = edges[m], edges[m + 1], edges[m + 2]
            if lo <= f <= mid:
                matrix[k, m] = (f - lo) / (mid - lo)
            elif mid < f <= hi:
                matrix[k, m] = (hi - f) / (hi - mid)
    return matrix


def test_mel_filterbank_matches_reference_and_has_no_empty_filter():
    fb = M.mel_filterbank(256, 40, 8000).double().numpy()
    assert np.allclose(fb, reference_mel_matrix(256, 40, 8000), atol=1e-6)
    assert (fb.max(axis=0) > 0).all()


def test_log_mel_matches_a_numpy_dft():
    rate, length = 8000, 500
    signal = torch.randn(1, 1, length, generator=gen(0), dtype=torch.float64) * 0.3
    front_end = M.LogMel(rate)
    n_fft, hop, win = front_end.n_fft, front_end.hop_length, front_end.win_length
    assert (n_fft, hop, win) == (256, 80, 200)
    # Reference: zero-pad by n_fft/2, frame every hop, a periodic Hann window centred in n_fft, a plain DFT sum.
    x = np.pad(signal[0, 0].numpy(), n_fft // 2)
    window = np.zeros(n_fft)
    window[(n_fft - win) // 2 : (n_fft - win) // 2 + win] = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(win) / win)
    dft = np.exp(-2j * np.pi * np.outer(np.arange(n_fft // 2 + 1), np.arange(n_fft)) / n_fft)
    frames = np.stack([x[t * hop : t * hop + n_fft] * window for t in range(1 + length // hop)], axis=1)
    power = np.abs(dft @ frames) ** 2
    expected = np.log(np.maximum(reference_mel_matrix(n_fft, 40, rate).T @ power, 1e-6))
    out = front_end(signal.float())
    assert out.shape == (1, 1, 40, 1 + length // hop)
    assert np.allclose(out[0, 0].double().numpy(), expected, atol=1e-3)


def test_log_mel_floor_and_state_dict():
    front_end = M.LogMel(16000)
    assert (front_end.n_fft, front_end.hop_length) == (512, 160)
    assert torch.allclose(front_end(torch.zeros(2, 1, 1600)), torch.tensor(math.log(1e-6)))
    assert front_end.state_dict() == {}  # window and filterbank are derived, not saved


# ---------------------------------------------------------------- AudioCNN


def test_audio_cnn_shapes_dtypes_and_gradients():
    model = M.AudioCNN(10, width=4)
    x = random_waveforms(6, torch.int16, length=5360)
    logits = model(x)
    assert logits.shape == (6, 10)
    assert torch.equal(logits, model(x.float() / 32768))  # int16 is scaled to [-1, 1] as Normalized would
    logits.sum().backward()
    assert all(p.grad is not None for p in model.parameters())
    model.eval()
    assert model(random_waveforms(1, torch.float32, length=333)).shape == (1, 10)  # any length, batch of one


def test_audio_cnn_stereo_autocast_and_bad_shape():
    model = M.AudioCNN(3, in_channels=2, width=4, sample_rate=16000).eval()
    x = torch.randn(2, 2, 1600, generator=gen(0)) * 0.1
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert model(x).shape == (2, 3)
    with pytest.raises(ValueError, match=r"\(B,2,T\)"):
        model(x[:, :1])


# ---------------------------------------------------------------- loaders on WAV files written here


def write_wav(path: Path, samples: np.ndarray, rate: int, width: int = 2) -> Path:
    """``samples (T,)`` or ``(T,C)`` float in [-1, 1] as PCM WAV with ``width`` bytes per sample."""
    frames = samples.reshape(len(samples), -1)
    if width == 1:
        raw = np.clip(np.round(frames * 128 + 128), 0, 255).astype(np.uint8).tobytes()
    elif width == 3:
        ints = np.clip(np.round(frames * 2**23), -(2**23), 2**23 - 1).astype("<i4")
        raw = ints.view(np.uint8).reshape(-1, 4)[:, :3].tobytes()
    else:
        scale = 2 ** (8 * width - 1)
        raw = np.clip(np.round(frames * scale), -scale, scale - 1).astype(f"<i{width}").tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(frames.shape[1])
        w.setsampwidth(width)
        w.setframerate(rate)
        w.writeframes(raw)
    return path


def raw_wav(fmt: int, channels: int, rate: int, bits: int, data: bytes) -> bytes:
    """A WAV file by hand, for headers ``wave`` will not write (float samples, 64-bit PCM)."""
    block = channels * bits // 8
    fmt_chunk = struct.pack("<HHIIHH", fmt, channels, rate, rate * block, block, bits)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt_chunk)) + fmt_chunk + b"data"
    body += struct.pack("<I", len(data)) + data
    return b"RIFF" + struct.pack("<I", len(body)) + body


def make_tree(root: Path) -> Path:
    """train/{hi,lo}/ and test/{hi,lo}/ of 0.05-0.2 s tones at 8 and 16 kHz, mono and stereo, 8/16/24-bit."""
    specs = [  # (split, class, name, rate, seconds, channels, width)
        ("train", "hi", "a.wav", 8000, 0.10, 1, 2),
        ("train", "hi", "b.wav", 16000, 0.20, 2, 2),
        ("train", "hi", "c.wav", 8000, 0.05, 1, 1),
        ("train", "lo", "a.wav", 16000, 0.10, 1, 3),
        ("train", "lo", "b.wav", 8000, 0.15, 2, 1),
        ("test", "hi", "a.wav", 16000, 0.10, 1, 2),
        ("test", "lo", "a.wav", 8000, 0.30, 1, 2),
    ]
    for split, cls, name, rate, seconds, channels, width in specs:
        hz = 1000 if cls == "hi" else 300
        samples = 0.5 * tone(hz, rate, seconds).numpy()
        write_wav(root / split / cls / name, np.stack([samples] * channels, axis=1), rate, width)
    return root


def test_audio_folder_needs_a_sample_rate_when_rates_differ(tmp_path):
    with pytest.raises(ValueError, match=r"different sample rates \(8000, 16000 Hz.*pass sample_rate"):
        load_audio_folder(make_tree(tmp_path / "tree"))


def test_audio_folder_resamples_mixes_and_fits(tmp_path):
    messages: list[str] = []
    dataset = load_audio_folder(make_tree(tmp_path / "tree"), sample_rate=8000, log=messages.append)
    assert isinstance(dataset, AudioDataset) and dataset.classes == ("hi", "lo") and dataset.sample_rate == 8000
    # Train lengths 0.10, 0.20, 0.05, 0.10, 0.15 s: the 95th percentile is 0.19 s.
    assert dataset.train.waveforms.shape == (5, 1, 1520) and dataset.test.waveforms.shape == (2, 1, 1520)
    assert dataset.train.inputs is dataset.train.waveforms and dataset.train.waveforms.dtype == torch.int16
    assert dataset.train.labels.tolist() == [0, 0, 0, 1, 1] and dataset.test.labels.tolist() == [0, 1]
    assert any("clip length 0.19 s (1520 samples at 8000 Hz), enough for the 95th percentile" in m for m in messages)
    # hi/a: 0.1 s at 8 kHz, centred: 360 zeros each side, the tone exactly (16-bit at its own rate).
    a = dataset.train.waveforms[0, 0]
    assert (a[:360] == 0).all() and (a[1160:] == 0).all()
    assert torch.equal(a[360:1160], torch.from_numpy(np.round(0.5 * tone(1000, 8000, 0.1).numpy() * 32767)).short())
    # hi/b: stereo 16 kHz, cropped to its middle 0.19 s and resampled: the 1 kHz tone, within resampling error.
    b = dataset.train.waveforms[1, 0].double() / 32768
    assert (b[200:-200].abs().max() - 0.5).abs() < 0.01
    assert torch.fft.rfft(b).abs().argmax().item() * 8000 / 1520 == pytest.approx(1000, abs=6)
    # hi/c: 8-bit, at the data's rate: 8-bit steps of 256 on the int16 scale.
    c = dataset.train.waveforms[2, 0]
    assert (c % 256 == 0).all() and int(c.abs().max()) == 64 * 256


def test_audio_folder_clip_seconds_and_archives(tmp_path):
    root = make_tree(tmp_path / "tree")
    folder = load_audio_folder(root, sample_rate=16000, clip_seconds=0.25)
    assert folder.train.waveforms.shape == (5, 1, 4000) and folder.clip_seconds == 0.25
    with tarfile.open(tmp_path / "tree.tar.gz", "w:gz") as tar:
        tar.add(root, arcname="wrapped")
    with zipfile.ZipFile(tmp_path / "tree.zip", "w") as zf:
        for file in sorted(root.rglob("*.wav")):
            zf.write(file, file.relative_to(root).as_posix())
    for archive in (tmp_path / "tree.tar.gz", tmp_path / "tree.zip"):
        loaded = load_audio_folder(archive, sample_rate=16000, clip_seconds=0.25)
        assert loaded.name == "tree" and loaded.classes == folder.classes
        assert torch.equal(loaded.train.waveforms, folder.train.waveforms)
        assert torch.equal(loaded.test.labels, folder.test.labels)


def test_audio_cache_files_keep_the_names_earlier_versions_wrote(tmp_path):
    # A cache written before the loaders shared one cached loader still hits: same key text, same file name.
    root, cache = make_tree(tmp_path / "tree"), tmp_path / "cache"
    load_audio_folder(root, sample_rate=8000, cache_dir=cache)
    h = hashlib.sha256()
    for split in ("train", "test"):
        for cls in ("hi", "lo"):
            for path in sorted((root / split / cls).iterdir()):
                h.update(f"{path.relative_to(root).as_posix()}\0{path.stat().st_size}\0".encode() + path.read_bytes())
    key = hashlib.sha256(f"lossaug-audio-v1\0{h.hexdigest()}\0{(8000, None)!r}".encode()).hexdigest()[:24]
    assert [p.name for p in cache.iterdir()] == [f"tree-audio-{key}.npz"]


def test_cache_round_trip_and_nothing_half_written(tmp_path):
    root, cache = make_tree(tmp_path / "tree"), tmp_path / "cache"
    first = load_audio_folder(root, sample_rate=8000, cache_dir=cache)
    messages: list[str] = []
    again = load_audio_folder(root, sample_rate=8000, cache_dir=cache, log=messages.append)
    assert any("cache hit" in m for m in messages)
    assert torch.equal(first.train.waveforms, again.train.waveforms) and again.sample_rate == 8000
    assert len(list(cache.iterdir())) == 1
    # A corrupt file: the load fails and leaves no cache file, complete or partial, for that content.
    (root / "test" / "lo" / "bad.wav").write_bytes(b"RIFF\x10\x00\x00\x00WAVEjunk")
    with pytest.raises(ValueError):
        load_audio_folder(root, sample_rate=8000, cache_dir=cache)
    assert len(list(cache.iterdir())) == 1


@pytest.mark.parametrize(
    "content,match",
    [
        (b"", "empty file"),
        # Decoded by soundfile (issue 32): libsndfile's own words, after the file's name.
        (b"this is a text file, not audio\n", "Format not recognised"),
        (b"RIFF\x24\x00\x00\x00WAVEfmt ", "No 'data' chunk"),  # truncated header
        (raw_wav(1, 1, 8000, 64, b"\0" * 16), "unimplemented format"),
        (raw_wav(1, 1, 8000, 16, b""), "empty"),
    ],
)
def test_bad_files_get_a_one_line_error_naming_them(tmp_path, content, match):
    root = make_tree(tmp_path / "tree")
    bad = root / "train" / "lo" / "zz.wav"
    bad.write_bytes(content)
    with pytest.raises(ValueError, match=match) as error:
        load_audio_folder(root, sample_rate=8000)
    message = str(error.value)
    assert str(bad) in message and "\n" not in message


def test_float_wav_needs_soundfile_or_reads_with_it(tmp_path):
    samples = np.array([0.0, 0.5, -0.25, 1.0], dtype="<f4")
    path = tmp_path / "float.wav"
    path.write_bytes(raw_wav(3, 1, 8000, 32, samples.tobytes()))
    if importlib.util.find_spec("soundfile") is None:
        with pytest.raises(ValueError, match=f"{path}.*pip install soundfile"):
            decode_audio(path)
    else:
        decoded, rate = decode_audio(path)
        assert rate == 8000 and np.allclose(decoded, samples)


def test_decode_audio_bit_depths_and_channels(tmp_path):
    signal = np.array([0.0, 0.5, -0.5, 0.25, -1.0])
    for width in (1, 2, 3, 4):
        decoded, rate = decode_audio(write_wav(tmp_path / f"w{width}.wav", signal, 11025, width))
        assert rate == 11025 and np.allclose(decoded, signal, atol=1 / 2 ** (8 * width - 1)), width
    stereo = np.stack([signal, -signal / 2], axis=1)
    decoded, _ = decode_audio(write_wav(tmp_path / "stereo.wav", stereo, 8000).read_bytes(), "stereo bytes")
    assert np.allclose(decoded, signal / 4, atol=1e-4)


def test_audio_folder_layout_errors(tmp_path):
    root = make_tree(tmp_path / "tree")
    write_wav(root / "test" / "extra" / "a.wav", np.zeros(100), 8000)
    with pytest.raises(ValueError, match=r"only in test: \['extra'\]"):
        load_audio_folder(root, sample_rate=8000)
    # A folder of class folders is a data set to split (issue 32): it asks for the fraction.
    with pytest.raises(ValueError, match="no train/ and test/ folders: pass test_fraction"):
        load_audio_folder(root / "test")
    with pytest.raises(ValueError, match="sample_rate must be a positive int"):
        load_audio_folder(root, sample_rate=0)


# ---------------------------------------------------------------- FSDD


def make_fake_fsdd(tmp_path: Path) -> tuple[Path, Path]:
    """``(archive, folder)``: digits 0-2, speakers ann and bob, recordings 0-6, 8 kHz 16-bit, lengths varied."""
    folder = tmp_path / "free-spoken-digit-dataset"
    for digit in range(3):
        for speaker in ("ann", "bob"):
            for index in range(7):
                seconds = 0.05 + 0.01 * index
                write_wav(
                    folder / "recordings" / f"{digit}_{speaker}_{index}.wav",
                    0.3 * tone(200 * (digit + 1), 8000, seconds).numpy(),
                    8000,
                )
    (folder / "README.md").write_text("fake FSDD\n")
    archive = tmp_path / "fsdd.tar.xz"
    with tarfile.open(archive, "w:xz") as tar:
        tar.add(folder, arcname="free-spoken-digit-dataset")
    return archive, folder


def test_fsdd_official_split_from_archive_and_folder(tmp_path):
    archive, folder = make_fake_fsdd(tmp_path)
    messages: list[str] = []
    dataset = load_fsdd(archive, log=messages.append)
    assert dataset.classes == tuple("0123456789") and dataset.sample_rate == 8000
    # Recordings 0-4 are the test set: 3 digits x 2 speakers x 5 = 30; 5-6 train: 12.
    assert len(dataset.test.labels) == 30 and len(dataset.train.labels) == 12
    assert dataset.train.labels.tolist() == [0] * 4 + [1] * 4 + [2] * 4
    assert any("FSDD (official split): 12 train / 30 test clips" in m for m in messages)
    for path in (folder, folder / "recordings", tmp_path):
        loaded = load_fsdd(path)
        assert torch.equal(loaded.train.waveforms, dataset.train.waveforms)
        assert torch.equal(loaded.test.labels, dataset.test.labels)


def test_fsdd_held_out_speaker_and_cache(tmp_path):
    archive, _ = make_fake_fsdd(tmp_path)
    dataset = load_fsdd(archive, test_speaker="bob", clip_seconds=0.1, cache_dir=tmp_path / "cache")
    assert dataset.name == "fsdd-test-bob" and dataset.train.waveforms.shape == (21, 1, 800)
    assert len(dataset.test.labels) == 21
    messages: list[str] = []
    again = load_fsdd(archive, test_speaker="bob", clip_seconds=0.1, cache_dir=tmp_path / "cache", log=messages.append)
    assert any("cache hit" in m for m in messages) and torch.equal(again.test.waveforms, dataset.test.waveforms)
    with pytest.raises(ValueError, match=r"test_speaker 'carl'.*\['ann', 'bob'\]"):
        load_fsdd(archive, test_speaker="carl")


def test_fsdd_errors_name_the_file(tmp_path):
    _, folder = make_fake_fsdd(tmp_path)
    odd = write_wav(folder / "recordings" / "seven_ann_1.wav", np.zeros(10), 8000)
    with pytest.raises(ValueError, match=f"unexpected FSDD file name {odd}"):
        load_fsdd(folder)
    odd.unlink()
    (folder / "recordings" / "1_ann_3.wav").write_bytes(b"not audio")
    with pytest.raises(ValueError, match="1_ann_3.wav: Format not recognised"):
        load_fsdd(folder)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no FSDD recordings"):
        load_fsdd(tmp_path / "empty")


@pytest.mark.skipif(not SHARED_FSDD.is_file(), reason=f"{SHARED_FSDD} not present")
def test_real_fsdd_official_split_counts():
    dataset = load_fsdd(SHARED_FSDD)
    assert len(dataset.train.labels) == 2700 and len(dataset.test.labels) == 300
    assert dataset.sample_rate == 8000 and dataset.num_classes == 10
    assert torch.bincount(dataset.test.labels).tolist() == [30] * 10
