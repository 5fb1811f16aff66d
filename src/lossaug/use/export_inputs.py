"""What an export's model.json says its module takes and how a file becomes that input, per kind of data (the
``export_takes`` and ``export_preprocessing`` of each ``kinds`` row): exactly what ``lossaug predict`` does
(``use.inputs``; README, Export, has a torch-only reference that follows it)."""

from __future__ import annotations

from typing import Any

from lossaug.use.inputs import MAX_RESAMPLED, MIN_RATE
from lossaug.use.run import InputSpec

__all__ = ["audio_preprocessing", "audio_takes", "image_preprocessing", "image_takes"]


def image_takes(spec: InputSpec, takes_float: bool) -> str:
    """The module's input in words: uint8 images of the run's shape (``takes_float`` does not apply)."""
    return f"uint8 images (B,{spec.channels},{spec.height},{spec.width})"


def audio_takes(spec: InputSpec, takes_float: bool) -> str:
    """The module's input in words: waveforms of the run's rate and clip length, int16 (or float where the format
    takes it)."""
    scale = "int16 or float in [-1, 1]" if takes_float else "int16"
    return (
        f"waveforms (B,{spec.channels},{spec.clip_samples}) at {spec.sample_rate} Hz, {scale}; mono clips centred in "
        "the clip length, zero-padded or cropped equally at both ends (see preprocessing)"
    )


def image_preprocessing(spec: InputSpec) -> dict[str, Any]:
    """How ``lossaug predict`` turns an image file into the module's input."""
    mode = "RGB" if spec.channels == 3 else "L"
    return {
        "decode": f"PIL.Image.open(FILE); a mode other than L or RGB converted to L (gray modes) or RGB; then "
        f"converted to {mode} for this {spec.channels}-channel run (a gray image's channel repeated)",
        "resize": f"to {spec.width}x{spec.height} (width x height) with PIL bilinear when its size differs"
        + (
            f", after resizing to {spec.image_size}x{spec.image_size} as the run's --image-size" * bool(spec.image_size)
        ),
        "scale": "none: uint8 (B,C,H,W) in [0, 255]; the module applies the run's normalisation",
    }


def audio_preprocessing(spec: InputSpec) -> dict[str, Any]:
    """How ``lossaug predict`` turns an audio file into the module's input."""
    return {
        "decode": "soundfile.read(FILE, dtype='float32', always_2d=True): samples (T,C) in [-1, 1] and the file's rate",
        "mono": "the mean over channels in float32 (numpy: samples.mean(axis=1, dtype=float32))",
        "resample": {
            "to_rate": spec.sample_rate,
            "from_rates": f"any from {MIN_RATE} Hz; at most {MAX_RESAMPLED} samples after resampling",
            "method": "Hann-windowed sinc (torchaudio's sinc_interp_hann), polyphase: rates reduced by their gcd to "
            "orig:new, one float32 filter per output phase from float64 arithmetic, one conv1d of stride orig over "
            "the clip zero-padded by width before and width + orig after, cut to ceil(T * new / orig) samples",
            "zero_crossings": 6,
            "rolloff": 0.99,
            "width": "ceil(zero_crossings * orig / (min(orig, new) * rolloff))",
        },
        "scale": "round(x * 32768) (half to even), clipped to [-32768, 32767], int16",
        "fit": {
            "clip_samples": spec.clip_samples,
            "how": "centred: a longer clip cropped from (T - clip_samples) // 2, a shorter one zero-padded with "
            "(clip_samples - T) // 2 zeros before it and the rest after",
        },
        "shape": f"(1,{spec.channels},{spec.clip_samples}) per file, the mono clip repeated over channels",
    }
