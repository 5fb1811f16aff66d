"""Issue 32, pictures and words: ``show``'s legend, spectrogram axes and CutMix lam; ``report``'s epoch labels and
entropy axis; help strings and README recipes that match what the tool does."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import lossaug
from lossaug.show import (
    BEST_COLOR,
    BEST_LEGEND,
    SPECTROGRAM_UNITS,
    CandidateGrid,
    candidate_figure,
    mixed_candidates,
    tile_label,
)

pytest.importorskip("matplotlib")


def _grid(kind: str = "image") -> CandidateGrid:
    generator = torch.Generator().manual_seed(0)
    if kind == "audio":
        candidates = (torch.randn(2, 3, 1, 4000, generator=generator) * 3000).to(torch.int16)
    else:
        candidates = torch.randint(0, 256, (2, 3, 3, 8, 8), generator=generator, dtype=torch.uint8)
    scores = torch.tensor([[0.1, 0.9, 0.2], [0.5, 0.1, 0.3]])
    return CandidateGrid(candidates, torch.tensor([0, 1]), scores, scores.softmax(1), 1.0, "", kind, 8000)


def test_show_has_a_legend_for_its_red_frame():
    import matplotlib.colors as colors
    import matplotlib.pyplot as plt

    fig = candidate_figure(_grid(), ("cat", "dog"), title="t")
    try:
        assert [text.get_text() for legend in fig.legends for text in legend.get_texts()] == [BEST_LEGEND]
        axes = [ax for ax in fig.axes]
        framed = [i for i, ax in enumerate(axes) if colors.same_color(ax.spines["top"].get_edgecolor(), BEST_COLOR)]
        assert framed == [1, 3]  # the most probable candidate of each row
        assert axes[1].title.get_color() == BEST_COLOR and axes[0].title.get_color() == "black"
    finally:
        plt.close(fig)


def test_show_draws_spectrograms_with_time_frequency_axes_and_a_colour_bar():
    import matplotlib.pyplot as plt

    fig = candidate_figure(_grid("audio"), ("cat", "dog"))
    try:
        tiles, bars = fig.axes[:6], fig.axes[6:]
        assert [ax.get_xlabel() for ax in tiles] == ["", "", "", "time (s)", "time (s)", "time (s)"]
        assert [ax.get_ylabel() for ax in tiles[::3]] == ["frequency (kHz, mel scale)"] * 2
        assert tiles[0].get_xlim() == (0.0, 0.5)  # 4000 samples at 8 kHz
        assert [tick.get_text() for tick in tiles[0].get_yticklabels()][0] == "0.0"  # the lowest mel channel, in kHz
        assert len(bars) == 1 and bars[0].get_ylabel() == SPECTROGRAM_UNITS
    finally:
        plt.close(fig)


def test_cutmix_with_a_partner_of_the_same_class_reports_the_pasted_area():
    augment = lossaug.LossAwareAugment("cutmix:1.0", num_candidates=1, num_classes=3)
    images = torch.randint(0, 256, (8, 3, 16, 16), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    targets = torch.zeros(8, dtype=torch.long)  # every partner is of the same class
    candidates, soft, own = mixed_candidates(augment, images, targets, 1, torch.Generator().manual_seed(3))
    assert torch.equal(soft, torch.nn.functional.one_hot(targets, 3).float().unsqueeze(1))  # cannot tell alone
    kept = (candidates[:, 0] == images).all(dim=1).float().mean(dim=(1, 2))  # noise images: pasted pixels differ
    assert torch.allclose(own[:, 0], kept) and (own < 1).any()
    grid = CandidateGrid(
        candidates, targets, torch.zeros(8, 1), torch.ones(8, 1), 1.0, "", candidate_targets=soft, own_fraction=own
    )
    for row in range(8):
        label = tile_label(grid, ("a", "b", "c"), row, 0)
        expected = f"a + a, lam {float(kept[row]):.2f}" if kept[row] < 1 else "a, lam 1.00"
        assert label == expected


def test_mixed_candidates_draw_what_the_method_draws():
    augment = lossaug.LossAwareAugment("flip,cutmix:1.0", num_candidates=3, num_classes=2)
    images = torch.randint(0, 256, (4, 3, 8, 8), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    targets = torch.tensor([0, 1, 1, 0])
    expected = augment.candidates(images, num_candidates=3, generator=torch.Generator().manual_seed(5), targets=targets)
    candidates, soft, own = mixed_candidates(augment, images, targets, 3, torch.Generator().manual_seed(5))
    assert torch.equal(candidates, expected.candidates) and torch.equal(soft, expected.targets)
    assert own.shape == (4, 3) and bool(((own > 0) & (own <= 1)).all())


def _fake_run(directory: Path, epochs_planned: int, epochs_ran: int, *, trunk: bool = False) -> Path:
    directory.mkdir(parents=True)
    config = {"eval_every": 1, "epochs": epochs_planned, "method": "baseline", "setting": "A", "seed": 0}
    (directory / "config.json").write_text(json.dumps({"config": config}))
    records = [
        {
            "epoch": e,
            "train_loss": 1.0,
            "test_error": 0.5,
            "test_loss": 1.0,
            "elapsed_seconds": float(e),
            "entropy": 1.3862 - 1e-4 * e,
            "uniform_entropy": 1.3863,
            "chosen_score_ratio": 1.0,
        }
        for e in range(1, epochs_ran + 1)
    ]
    (directory / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    if trunk:
        (directory / "trunk.json").write_text("{}")
    return directory


def test_report_labels_runs_with_the_epochs_they_ran(tmp_path):
    from lossaug.plots import read_run

    assert (
        read_run(_fake_run(tmp_path / "trunk" / "seed-0", 4, 2, trunk=True))[0] == "baseline trunk A seed 0 (2 of 4 ep)"
    )
    assert read_run(_fake_run(tmp_path / "stopped", 10, 3))[0] == "baseline A seed 0 (3 of 10 ep)"
    assert read_run(_fake_run(tmp_path / "done", 3, 3))[0] == "baseline A seed 0 (3 ep)"


def test_report_entropy_axis_is_fixed_not_autoscaled_to_noise(tmp_path, monkeypatch):
    import lossaug.plots as plots
    from lossaug.plots import ENTROPY_AXIS, plot_report, read_run

    figures = []
    save = plots._save
    monkeypatch.setattr(
        plots, "_save", lambda plt, fig, path, title: figures.append(fig) or save(plt, fig, path, title)
    )
    label, records = read_run(_fake_run(tmp_path / "run", 3, 3))
    plot_report({label: records}, tmp_path / "report.png")
    entropy_axis = figures[0].axes[2]
    assert entropy_axis.get_ylim() == ENTROPY_AXIS == (0.0, 1.05)
    assert "axis fixed to [0, 1]" in entropy_axis.get_ylabel()
    assert entropy_axis.get_legend_handles_labels()[1] == ["baseline A seed 0 (3 ep)"]


README = Path(__file__).resolve().parent.parent / "README.md"


def _readme_section(heading: str) -> str:
    text = README.read_text()
    start = text.index(heading)
    return text[start : text.index("\n### ", start + 1)]


def _train_commands(section: str) -> list[list[str]]:
    """The ``lossaug train`` commands of a section's bash blocks, continuation lines joined, comments dropped."""
    import re
    import shlex

    commands = []
    for block in re.findall(r"```bash\n(.*?)```", section, re.S):
        for line in block.replace("\\\n", " ").splitlines():
            words = shlex.split(line, comments=True)
            if words[:2] == ["lossaug", "train"]:
                commands.append(words[2:])
    return commands


def test_the_small_data_recipe_does_not_trigger_the_step_count_warning():
    from lossaug.cli import build_parser
    from lossaug.cli.options import config_from_args
    from lossaug.run.guards import small_data_warnings

    commands = _train_commands(_readme_section("### A few hundred images or clips on a CPU"))
    assert len(commands) == 2, "README lost its small-data recipe"
    for options in commands:
        config = config_from_args(build_parser().parse_args(["train", *options]))
        for num_train in range(160, 2001):  # "a few hundred" and up: the README says from 160
            assert small_data_warnings(num_train, config.images_per_step()) == [], (options, num_train)


def _option_help(command: str, option: str) -> str:
    import argparse

    from lossaug.cli import build_parser

    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices
    return next(a for a in commands[command]._actions if option in a.option_strings).help


def test_out_help_says_what_the_cli_writes_without_it():
    import re

    from lossaug.cli import build_parser
    from lossaug.cli.options import config_from_args

    assert "write nothing" not in _option_help("train", "--out")
    assert "(default: runs/<YYYYmmdd-HHMMSS>-<dataset>-<method>)" in _option_help("train", "--out")
    config = config_from_args(build_parser().parse_args(["train", "--method", "baseline"]))
    assert re.fullmatch(r"runs/\d{8}-\d{6}-mini-baseline", config.out)
    assert "required without --protocol" in _option_help("compare", "--out")
    assert "(default: runs/advise)" in _option_help("advise", "--out")


def test_no_verify_help_says_what_the_flag_does():
    text = _option_help("train", "--no-verify")
    assert text.startswith("skip the md5 check of CIFAR archives") and "--no-verify skips" not in text


def test_data_md_names_load_datasets_audio_keywords_as_they_exist():
    import inspect

    from lossaug.data import load_dataset

    text = (README.parent / "docs" / "DATA.md").read_text()
    bullet = text[text.index("- **Python API.**") :].split("\n- ")[0]
    parameters = inspect.signature(load_dataset).parameters
    for keyword in ("sample_rate", "clip_seconds", "test_speaker", "audio", "test_fraction", "split_seed", "skip_bad"):
        assert f"`{keyword}" in bullet and keyword in parameters, keyword


def _import_or_skip(name: str):
    """The module, or a clean skip where it does not import: missing, or installed for another torch (its
    compiled operators then fail to load with a RuntimeError or similar rather than an ImportError)."""
    try:
        return pytest.importorskip(name, exc_type=ImportError)
    except (RuntimeError, AttributeError, OSError) as error:
        pytest.skip(f"{name} does not import beside torch {torch.__version__}: {type(error).__name__}: {error}")


def test_readme_pretrained_backbone_example_builds_through_model(tmp_path, monkeypatch):
    import re

    torchvision = _import_or_skip("torchvision")
    from lossaug.models.user import build_factory_model

    section = _readme_section("### Fine-tune your own model")
    block = re.search(r"<!-- pretrained-backbone-example[^>]*-->\s*```python\n(.*?)```", section, re.S)
    assert block is not None, "README lost its pre-trained backbone example"
    models = [c[c.index("--model") + 1] for c in _train_commands(section) if "--model" in c]
    name = next(m for m in models if m.startswith("backbones:"))
    (tmp_path / "backbones.py").write_text(block.group(1))
    # No download in a test: the weights file is put where torch.hub caches it, holding a fresh ResNet-18's weights.
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    url = torchvision.models.ResNet18_Weights.IMAGENET1K_V1.url
    cached = Path(torch.hub.get_dir()) / "checkpoints" / url.rsplit("/", 1)[-1]
    cached.parent.mkdir(parents=True)
    torch.save(torchvision.models.resnet18().state_dict(), cached)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    model = build_factory_model(name, num_classes=3, in_channels=3, width=None)
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 3)
    assert torch.equal(model.conv1.weight, torch.load(cached)["conv1.weight"])  # the weights were loaded
