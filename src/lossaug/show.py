"""See what selection sees: M candidates of a few test images, scored by a trained run's model, as a PNG grid.

``load_run`` rebuilds a run's model and test split from its checkpoint; ``score_examples`` makes the candidates
with the run's augmentation and scores them (tensors in, tensors out); ``plot_candidates`` draws rows = images,
columns = candidates, each tile titled with the true class, its score and its selection probability.
``lossaug show`` is ``show_candidates(load_run(...), out)``.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from lossaug.data import AudioSplit, Kind, Split, load_for
from lossaug.errors import InputError
from lossaug.kinds import kind_named, kind_of_dataset
from lossaug.methods import method_named
from lossaug.models import build_classifier, check_classifier_output, check_state_fits
from lossaug.models.audio import DEFAULT_SAMPLE_RATE
from lossaug.run.checkpoint import RunCheckpoint, load_checkpoint, read_run_checkpoint
from lossaug.run.config import TrainConfig
from lossaug.run.method import method_for
from lossaug.seeds import stream_seed
from lossaug.selection import LossAwareAugment, score_candidates, selection_probs

__all__ = [
    "CandidateGrid",
    "LoadedRun",
    "candidate_figure",
    "find_data",
    "load_run",
    "mixed_candidates",
    "plot_candidates",
    "read_checkpoint",
    "run_sample_rate",
    "score_examples",
    "show_candidates",
]

# The baseline trains with a uniform choice (temperature inf), which would show every probability as 1/M.
BASELINE_DISPLAY_TEMPERATURE = 1.0


@dataclass(frozen=True)
class LoadedRun:
    """A trained run: its config, its model (on the CPU, weights from the checkpoint), its test split (images or,
    for a ``kind`` of clips, waveforms), and the network that scored candidates in training (the proxy if the run had
    one, else the model)."""

    config: TrainConfig
    model: nn.Module
    classes: tuple[str, ...]
    test: Split | AudioSplit
    checkpoint: Path
    scorer: nn.Module | None = None
    kind: Kind = "image"
    sample_rate: int | None = None  # Hz, audio runs: the rate the model was built for

    @property
    def scoring_model(self) -> nn.Module:
        return self.scorer if self.scorer is not None else self.model


@dataclass(frozen=True)
class CandidateGrid:
    """``candidates (N,M,C,H,W)`` uint8 (or, for a ``kind`` of clips, ``(N,M,C,T)`` int16) of ``targets (N,)``,
    their ``scores (N,M)`` and ``probs (N,M)`` at ``temperature``; ``note`` says how the probabilities relate to
    training (empty when they are the run's). ``candidate_targets (N,M,K)``: each candidate's own soft target when
    the run's augmentation mixes labels (Mixup, CutMix: the tile holds both images, its title both classes and
    lam), else None."""

    candidates: Tensor
    targets: Tensor
    scores: Tensor
    probs: Tensor
    temperature: float
    note: str
    kind: Kind = "image"
    sample_rate: int | None = None  # Hz, audio: the rate of the clips (their spectrograms are drawn at it)
    candidate_targets: Tensor | None = None
    own_fraction: Tensor | None = None  # (N,M) with candidate_targets: the share of each tile that is its own image


DEFAULT_IMAGES = 6  # rows of a candidate figure when --images is not given


# What using a trained model reads from its checkpoint; the rest (optimizer, random streams, ...) only resumes.
TRAINED_KEYS = ("model", "config", "num_classes")


def read_checkpoint(path: Path) -> tuple[Path, RunCheckpoint]:
    """A checkpoint file, or a run directory's newest valid checkpoint, holding at least ``TRAINED_KEYS``."""
    if path.is_dir():
        return read_run_checkpoint(path, TRAINED_KEYS)
    if not path.exists():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    if not path.is_file():  # a FIFO would block for ever, /dev/zero never end
        raise InputError(f"{path} is not a regular file; give a run directory or its checkpoint.pt")
    with path.open("rb") as handle:
        head = handle.read(8)
    if not head.startswith((b"PK\x03\x04", b"\x80")):  # a torch zip file, or torch's legacy pickle
        raise InputError(f"{path} is not a checkpoint ({_looks_like(head)}); give a run directory or its checkpoint.pt")
    payload = load_checkpoint(path)
    missing = [key for key in TRAINED_KEYS if key not in payload]
    if missing:
        raise InputError(f"checkpoint {path} lacks {', '.join(missing)}; is it a lossaug training checkpoint?")
    return path, RunCheckpoint.from_dict(payload, path, needs=())


def _looks_like(head: bytes) -> str:
    """What a file that is not a torch file seems to be, from its first bytes."""
    if head.startswith(b"\x89PNG") or head.startswith(b"\xff\xd8") or head.startswith(b"GIF8"):
        return "it is an image"
    if head.startswith(b"RIFF"):
        return "it is a WAV file"
    if head.lstrip()[:1] in (b"{", b"["):
        return "it is JSON text"
    return "it is empty" if not head else "it is not a torch file"


def run_sample_rate(checkpoint: RunCheckpoint) -> int | None:
    """The audio rate (Hz) a checkpoint's network was built for, None for an image run. Recorded in the checkpoint
    (``inputs``) since runs train at their data's own rate; before that every audio run ran at 8000 Hz."""
    if checkpoint.inputs:
        return checkpoint.inputs.get("sample_rate")
    return kind_of_dataset(checkpoint.config["dataset"]).default_sample_rate


def find_data(config: TrainConfig, run_dir: Path) -> str | None:
    """Where a run's data are now: its recorded path when it exists from here; a relative path recorded by an
    older run is also looked for under the run directory's parents (it was relative to where the run started).
    Returns the recorded path unchanged when nothing is found (loading it then names it)."""
    if config.data is None or Path(config.data).is_absolute() or Path(config.data).exists():
        return config.data
    for parent in Path(run_dir).absolute().parents:
        if (parent / config.data).exists():
            return str(parent / config.data)
    return config.data


def load_run(
    checkpoint: str | Path, *, data: str | None = None, cache_dir: Path | None = None, trust_code: str | None = None
) -> LoadedRun:
    """Rebuild the model of ``checkpoint`` (a ``checkpoint.pt`` or a run directory) and load the run's test split.

    ``data`` replaces the run's data path (when the data moved); ``cache_dir`` is where to find or put downloads
    and decoded arrays (None: no cache); ``trust_code`` names the module of a run trained with the user's own
    model (``--model MODULE:FACTORY``), which is imported only then.
    """
    path, saved = read_checkpoint(Path(checkpoint))
    config = TrainConfig.from_dict(saved.config)
    from lossaug.use.checks import check_trusted  # here: lossaug.use imports this module

    for model_name in {config.model, config.proxy_model} - {None}:
        check_trusted(str(model_name), trust_code, path)
    model, scorer = _networks(saved, config, path)
    # The run's own data options (classes, image size, audio, md5 check); where the data and the cache are may differ.
    moved = dataclasses.replace(
        config,
        data=data if data is not None else find_data(config, path.parent),
        cache_dir=None if cache_dir is None else str(cache_dir),
    )
    dataset = load_for(moved)
    if dataset.num_classes != saved.num_classes:
        raise InputError(
            f"checkpoint {path} has {saved.num_classes} classes but the {config.dataset} data has {dataset.num_classes}"
        )
    for name, network in ((config.model, model), (config.proxy_model, scorer)):
        if name is not None and network is not None:  # the factory's module may have changed since the run
            check_classifier_output(network, dataset.test.inputs[:2], saved.num_classes, name)
    return LoadedRun(config, model, dataset.classes, dataset.test, path, scorer, dataset.kind, run_sample_rate(saved))


def _networks(saved: RunCheckpoint, config: TrainConfig, path: Path) -> tuple[nn.Module, nn.Module | None]:
    """The model of checkpoint ``saved`` (read from ``path``) and its proxy (None without one), on the CPU."""
    state = saved.model
    if "mean" not in state:
        raise InputError(f"checkpoint {path}: the model has no 'mean' buffer; not a lossaug Normalized model")
    channels = state["mean"].shape[1]
    # The weights, mean and std included (buffers), come from the checkpoint; the init seed does not matter.
    neutral = ([0.0] * channels, [1.0] * channels)
    cpu, rate = torch.device("cpu"), run_sample_rate(saved)
    model = build_classifier(
        config.model, saved.num_classes, channels, config.width, neutral, device=cpu, init_seed=0, sample_rate=rate
    )
    check_state_fits(model, state, f"checkpoint {path}", config.model)
    model.load_state_dict(state)
    proxy_state = (saved.proxy or {}).get("model")
    if config.proxy_model is None or proxy_state is None:
        return model, None
    scorer = build_classifier(
        config.proxy_model,
        saved.num_classes,
        channels,
        config.proxy_width,
        neutral,
        device=cpu,
        init_seed=0,
        sample_rate=rate,
    )
    check_state_fits(scorer, proxy_state, f"checkpoint {path} (proxy)", config.proxy_model)
    scorer.load_state_dict(proxy_state)
    return model, scorer


def score_examples(
    run: LoadedRun, num_images: int | None = None, num_candidates: int = 4, *, seed: int = 0
) -> CandidateGrid:
    """Make ``num_candidates`` candidates of ``num_images`` test images (picked at random from ``seed``) with the
    run's augmentation and score them as the run did (its score, BatchNorm mode and temperature)."""
    available = len(run.test.labels)
    if num_images is None:  # DEFAULT_IMAGES, or every test image of a smaller test set
        num_images = min(DEFAULT_IMAGES, available)
    if num_images < 1 or num_images > available:
        raise InputError(f"--images (num_images) must be in [1, {available}], the run's test images; got {num_images}")
    if num_candidates < 1:
        raise InputError(f"num_candidates must be >= 1, got {num_candidates}")
    config = run.config
    pick = torch.Generator().manual_seed(stream_seed(seed, "show-images"))
    index = torch.randperm(len(run.test.labels), generator=pick)[:num_images]
    images, targets = run.test.inputs[index], run.test.labels[index]
    # The run's own method object (augmentation of its setting, Cutout filled with the training mean the model
    # holds, scoring options), asked for num_candidates candidates.
    mean = tuple(float(m) / 255 for m in run.model.get_buffer("mean").flatten())
    kind = kind_named(run.kind)
    method = method_for(
        dataclasses.replace(config, num_candidates=num_candidates),
        mean,
        torch.device("cpu"),
        audio_rate=run.sample_rate or kind.default_sample_rate,
        image_side=kind.image_side(images),
        num_classes=len(run.classes),
    )
    augment_generator = torch.Generator().manual_seed(stream_seed(seed, "show-augment"))
    candidate_targets = own_fraction = None
    if method.mixes_targets:  # mixup/cutmix: each candidate carries its own soft target, scored against it
        candidates, candidate_targets, own_fraction = mixed_candidates(
            method, images, targets, num_candidates, augment_generator
        )
    else:
        plain = method.candidates(images, num_candidates=num_candidates, generator=augment_generator)
        assert isinstance(plain, Tensor), "candidates without targets are a tensor"
        candidates = plain
    scoring = method.scoring
    scored_against = targets if candidate_targets is None else candidate_targets
    scores = score_candidates(
        run.scoring_model, candidates, scored_against, score=scoring.score, bn=scoring.bn, chunk_size=scoring.chunk_size
    )
    temperature, note = config.resolved_temperature(), ""
    if math.isinf(temperature):
        temperature = BASELINE_DISPLAY_TEMPERATURE
        note = "baseline run (trained on a uniform choice): probabilities shown at temperature 1"
    elif method_named(config.method).trains_all:
        note = (
            "weighted run: trained on every candidate, weighted as shown (its weights came from train-mode BatchNorm)"
        )
    elif config.score_fraction < 1:
        note = (
            f"gated run: only the {config.score_fraction:g} of each batch with the highest last loss was scored; "
            "the others trained on their first candidate"
        )
    probs = selection_probs(scores, temperature, config.uniform_mix)
    return CandidateGrid(
        candidates,
        targets,
        scores,
        probs,
        temperature,
        note,
        run.kind,
        run.sample_rate,
        candidate_targets,
        own_fraction,
    )


def mixed_candidates(
    method: LossAwareAugment, images: Tensor, targets: Tensor, num_candidates: int, generator: torch.Generator
) -> tuple[Tensor, Tensor, Tensor]:
    """``(candidates (N,M,...), targets (N,M,K), own_fraction (N,M))`` of ``images (N,...)`` with class
    ``targets (N,)``: the draws of ``method.candidates(images, num_candidates=M, targets=targets)``, made as one
    ``(N*M,...)`` batch of M = 1 (the same call on the same rows). Each row's target also carries a one-hot column
    of its own, which the mixing weighs like the classes: its weight is the row's own share (CutMix: 1 - the pasted
    area), also when the partner is of the same class and the class part stays one-hot."""
    count = len(images) * num_candidates
    soft = method.soft_targets(targets).repeat_interleave(num_candidates, dim=0)
    rows = torch.eye(count, dtype=soft.dtype, device=soft.device)
    flat = images.repeat_interleave(num_candidates, dim=0)
    made = method.candidates(flat, num_candidates=1, generator=generator, targets=torch.cat([soft, rows], dim=1))
    assert not isinstance(made, Tensor), "candidates with targets carry them"
    mixed = made.targets[:, 0]  # (N*M, K + N*M)
    num_classes = soft.shape[1]
    candidates = made.candidates.view(len(images), num_candidates, *made.candidates.shape[2:])
    own = mixed[:, num_classes:].diagonal()
    return (
        candidates,
        mixed[:, :num_classes].reshape(len(images), num_candidates, num_classes),
        own.reshape(len(images), num_candidates),
    )


def log_mel_of(clips: Tensor, sample_rate: int = DEFAULT_SAMPLE_RATE) -> Tensor:
    """Log-mel spectrograms ``(N,M,n_mels,frames)`` of the first channel of int16 waveform candidates
    ``(N,M,C,T)`` at ``sample_rate`` Hz, by ``audio_cnn``'s own front end (it has no learned parameters)."""
    from lossaug.models.audio import INT16_SCALE, LogMel

    num_clips, num_candidates, _, length = clips.shape
    with torch.no_grad():
        waveforms = clips[:, :, :1].reshape(-1, 1, length).float() / INT16_SCALE
        features = LogMel(sample_rate)(waveforms)  # (N*M, 1, n_mels, frames)
    return features.view(num_clips, num_candidates, *features.shape[-2:])


def tile_label(grid: CandidateGrid, classes: tuple[str, ...], row: int, column: int) -> str:
    """A tile's class line: the true class, or for a mixed candidate both classes and lam (the share of the tile
    that is the image's own: for CutMix 1 - the pasted area), e.g. ``"dog + cat, lam 0.63"``; a partner of the same
    class reads ``"dog + dog, lam 0.63"``."""
    if grid.candidate_targets is None:
        return classes[int(grid.targets[row])]
    target = grid.candidate_targets[row, column]
    own = int(grid.targets[row])
    lam = float(target[own] if grid.own_fraction is None else grid.own_fraction[row, column])
    rest = target.clone()
    rest[own] = -1.0
    other = int(rest.argmax())
    if lam >= 1.0 - 1e-6:  # nothing pasted or mixed in (the partner was the candidate itself, or an empty box)
        return f"{classes[own]}, lam {lam:.2f}"
    partner = own if float(target[other]) <= 0 else other  # all of its class weight: a partner of the same class
    return f"{classes[own]} + {classes[partner]}, lam {lam:.2f}"


# The most probable candidate of each row is framed and titled in this colour; the figure's legend says so.
BEST_COLOR = "tab:red"
BEST_LEGEND = "red frame and title: the most probable candidate of its row (p: its selection probability)"
SPECTROGRAM_UNITS = "log mel power (natural log; full scale 1)"


def candidate_figure(grid: CandidateGrid, classes: tuple[str, ...], *, title: str = ""):
    """The figure ``plot_candidates`` writes: one row per image (or clip: its candidates as log-mel spectrograms,
    time in seconds across, frequency upwards, one colour bar for all), one column per candidate, each tile titled
    with ``tile_label``, its score and probability; the most probable candidate of each row framed and titled in
    red, which a legend below says."""
    from lossaug.plots import _pyplot

    plt = _pyplot()  # first: a missing matplotlib is one line
    from matplotlib.patches import Patch

    num_images, num_candidates = grid.scores.shape
    clips = kind_named(grid.kind).has_rate  # drawn as log-mel spectrograms
    fig, axes = plt.subplots(
        num_images,
        num_candidates,
        squeeze=False,
        layout="constrained",
        figsize=(1.9 * num_candidates + (1.2 if clips else 0), 2.1 * num_images + 1.0),
    )
    best = grid.probs.argmax(dim=1)
    rate = grid.sample_rate or DEFAULT_SAMPLE_RATE
    spectrograms = log_mel_of(grid.candidates, rate) if clips else None
    for row in range(num_images):
        for column in range(num_candidates):
            ax = axes[row, column]
            if spectrograms is not None:
                drawn = _draw_spectrogram(ax, spectrograms, (row, column), rate, grid.candidates.shape[-1])
            else:
                image = grid.candidates[row, column].permute(1, 2, 0).numpy()
                gray = image.shape[2] == 1
                ax.imshow(image[:, :, 0] if gray else image, cmap="gray" if gray else None)
                ax.set_xticks([])
                ax.set_yticks([])
            chosen = column == int(best[row])
            score, prob = float(grid.scores[row, column]), float(grid.probs[row, column])
            ax.set_title(
                f"{tile_label(grid, classes, row, column)}\nscore {score:.3f}  p {prob:.2f}",
                fontsize=8,
                color=BEST_COLOR if chosen else "black",
            )
            for spine in ax.spines.values() if chosen else ():
                spine.set_edgecolor(BEST_COLOR)
                spine.set_linewidth(3)
    if spectrograms is not None:
        for ax in axes[-1]:
            ax.set_xlabel("time (s)", fontsize=8)
        for ax in axes[:, 0]:
            ax.set_ylabel("frequency (kHz, mel scale)", fontsize=8)
        fig.colorbar(drawn, ax=axes, shrink=0.8).set_label(SPECTROGRAM_UNITS, fontsize=8)
    frame = Patch(facecolor="none", edgecolor=BEST_COLOR, linewidth=3, label=BEST_LEGEND)
    fig.legend(handles=[frame], loc="outside lower center", fontsize=8, frameon=False)
    fig.suptitle(title + (f"\n{grid.note}" if grid.note else f"  (temperature {grid.temperature:g})"), fontsize=9)
    return fig


def _draw_spectrogram(ax, spectrograms: Tensor, tile: tuple[int, int], sample_rate: int, length: int):
    """Draw ``spectrograms[tile]`` (of ``spectrograms (N,M,n_mels,frames)``, clips of ``length`` samples at
    ``sample_rate`` Hz) into ``ax``: time in seconds across, mel channels upwards with their centre frequencies;
    every tile on one colour scale. Returns the image for the colour bar."""
    from lossaug.models.audio import mel_edges_hz

    n_mels = spectrograms.shape[2]
    seconds = length / sample_rate
    drawn = ax.imshow(
        spectrograms[tile].numpy(),
        origin="lower",
        aspect="auto",
        cmap="magma",
        extent=(0.0, seconds, 0.0, n_mels),
        vmin=float(spectrograms.min()),
        vmax=float(spectrograms.max()),
    )
    centres = mel_edges_hz(n_mels, sample_rate)[1:-1]  # channel k is centred on edge k + 1
    channels = (0, n_mels // 2, n_mels - 1)
    ax.set_yticks([k + 0.5 for k in channels], [f"{float(centres[k]) / 1000:.1f}" for k in channels], fontsize=6)
    ax.set_xticks([0.0, seconds], ["0", f"{seconds:.2g}"], fontsize=6)
    return drawn


def plot_candidates(grid: CandidateGrid, classes: tuple[str, ...], out: Path, *, title: str = "") -> Path:
    """Write ``candidate_figure(grid, classes, title=title)`` as a PNG (or any format matplotlib writes)."""
    from lossaug.plots import _pyplot

    plt = _pyplot()
    fig = candidate_figure(grid, classes, title=title)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        fig.savefig(out, dpi=100)
    except OSError as error:  # a write's error (a full disk) carries no file name: give it one
        raise OSError(error.errno, f"could not write {out}: {error.strerror or error}") from error
    finally:
        plt.close(fig)
    return out


def show_candidates(
    run: LoadedRun, out: Path, *, num_images: int | None = None, num_candidates: int = 4, seed: int = 0
) -> Path:
    """Score ``num_candidates`` candidates of ``num_images`` test images with ``run`` and draw them into ``out``."""
    grid = score_examples(run, num_images, num_candidates, seed=seed)
    config = run.config
    title = f"{config.method} {config.model} on {config.dataset}: {config.score} scores of candidates"
    return plot_candidates(grid, run.classes, Path(out), title=title)
