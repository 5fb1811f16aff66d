"""No silently dropped option (issue 31, item 1): every ``lossaug train`` option, fed to each command of
``COMMANDS``, is either honoured (recorded in the configuration that command resolves) or refused in one line that
names it (exit status 2). The options are read from the train parser, so a new option is covered without editing
this file; a new command is a row of ``COMMANDS`` (its argv prefix and a capture of its resolved configuration).
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import pytest

from lossaug.cli import build_parser, main
from lossaug.cli.options import option_flag
from lossaug.run.config import TrainConfig, validate_config


class _Captured(Exception):
    """Raised by a command's stand-in runner, carrying what the command resolved: nothing trains."""

    def __init__(self, resolved: dict):
        super().__init__("captured")
        self.resolved = resolved


def _capture_compare(monkeypatch):
    import lossaug.compare as compare

    def fake(config, reporter=None):
        compare.validate_compare(config)
        ratios = {setting: {"proposed": 2.0} for setting in config.settings}
        runs = {
            f"{s.setting}/{s.arm}/{s.seed}": dataclasses.asdict(s.config)
            for s in compare.plan(config, ratios)
            if s.arm is not None
        }
        raise _Captured({"out": config.out, "runs": runs})

    monkeypatch.setattr(compare, "run_compare", fake)


def _capture_demo(monkeypatch):
    import lossaug.demo as demo

    def fake(config, reporter=None, clock=None):
        raise _Captured(dataclasses.asdict(config))

    monkeypatch.setattr(demo, "run_demo", fake)


def _capture_bench(monkeypatch):
    import lossaug.bench as bench
    import lossaug.run.metadata as metadata
    from lossaug.bench.config import resolve_config

    class Result:  # what cmd_bench writes to --out FILE.json: here the resolved config
        def __init__(self, config):
            self.resolved = dataclasses.asdict(resolve_config(config))

        def to_json(self):
            return self.resolved

    def write(result, path):
        raise _Captured({**result, "out": str(path)})

    monkeypatch.setattr(bench, "run_bench", lambda config, log=None: Result(config))
    monkeypatch.setattr(bench, "format_bench", lambda result: "")
    monkeypatch.setattr(metadata, "write_json", write)


def _capture_advise(monkeypatch):
    import lossaug.advise.run as advise_run
    from lossaug.advise.plan import compare_config, validate_advise
    from lossaug.compare import plan, validate_compare

    def fake(config, reporter=None, clock=None):
        validate_advise(config)
        comparison = compare_config(config, (config.base.seed,), (1.0,))
        validate_compare(comparison)
        ratios = {setting: {"proposed": 2.0} for setting in config.settings}
        runs = {
            f"{s.setting}/{s.arm}/{s.seed}": dataclasses.asdict(s.config) for s in plan(comparison, ratios) if s.arm
        }
        raise _Captured({"out": config.out, "runs": runs})

    monkeypatch.setattr(advise_run, "run_advise", fake)


# command -> (argv before the option under test, where {tmp} is a fresh folder; the capture of its resolved config).
COMMANDS = {
    "compare": (
        [
            "compare",
            "--out",
            "{tmp}/cmp",
            "--arms",
            "baseline,proposed",
            "--seeds",
            "0",
            "--cost-ratio",
            "2",
            "--epochs",
            "4",
        ],
        _capture_compare,
    ),
    "demo": (["demo", "--out", "{tmp}/demo"], _capture_demo),
    "bench": (["bench", "--out", "{tmp}/bench.json"], _capture_bench),
    "advise": (
        ["advise", "--out", "{tmp}/advice", "--arms", "proposed", "--time", "1h", "--epochs", "4"],
        _capture_advise,
    ),
}

# Values that a type alone cannot give: each must be valid for `train` (test_samples_are_valid_train_options).
SPECIAL = {
    "--config": "{tmp}/options.toml",
    "--preset": "cpu",
    "--resume": "{tmp}/run",
    "--data": "{tmp}/data",
    "--model": "cnn",
    "--proxy-model": "cnn",
    "--augment": "flip",
    "--classes": "airplane,cat",
    "--init": "{tmp}/init.pt",
    "--test-speaker": "jackson",
    "--branch-from": "{tmp}/trunk",
    "--stop-at": "0.5",
    "--out": "{tmp}/out",
    "--dataset": "cifar10",
}
# Sample values by type, away from every default (and from the prefixes' values above).
BY_TYPE = {"int": "2", "float": "0.375", "str": "x"}


def _train_parser() -> argparse.ArgumentParser:
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices["train"]


def _train_options() -> list[argparse.Action]:
    return [a for a in _train_parser()._actions if a.option_strings and a.dest != "help"]


def _sample(action: argparse.Action, tmp: Path) -> list[str]:
    """The option and a valid value other than its default, as typed."""
    flag = max(action.option_strings, key=len)
    if action.nargs == 0:
        return [flag]
    if flag in SPECIAL:
        value = SPECIAL[flag]
    elif action.choices:
        default = getattr(TrainConfig, action.dest, None)
        value = next(choice for choice in sorted(action.choices) if choice != default)
    else:
        value = BY_TYPE[getattr(action.type, "__name__", "str")]
    return [flag, value.format(tmp=tmp)]


def _files(tmp: Path) -> None:
    """What the special samples name: an options file, a data folder, a run, a trunk and an init checkpoint."""
    for name in ("data", "run", "trunk"):
        (tmp / name).mkdir(parents=True, exist_ok=True)
    (tmp / "options.toml").write_text("lr = 0.3\n")
    (tmp / "init.pt").write_bytes(b"")


def _argv(command: str, tmp: Path, extra: list[str]) -> list[str]:
    return [part.format(tmp=tmp) for part in COMMANDS[command][0]] + extra


def _resolve(command: str, argv: list[str], monkeypatch) -> tuple[int | None, dict | None]:
    COMMANDS[command][1](monkeypatch)
    try:
        return main(argv), None
    except _Captured as captured:
        return None, captured.resolved


def _recorded(resolved: dict, dest: str, expected, command: str) -> bool:
    """Whether ``expected`` is what the command resolved for ``dest``: in every planned run of a compare."""
    if command in ("compare", "advise") and dest != "out":
        return all(run.get(dest) == expected for run in resolved["runs"].values())
    return resolved.get(dest) in (expected, (expected,))  # bench takes lists: --select-every 2 is (2,)


OPTIONS = [pytest.param(action, id=max(action.option_strings, key=len)) for action in _train_options()]


@pytest.mark.parametrize("action", OPTIONS)
def test_samples_are_valid_train_options(action, tmp_path):
    """The samples are options `train` takes: a refusal elsewhere is the command's, not a bad value's."""
    _files(tmp_path)
    args = _train_parser().parse_args(_sample(action, tmp_path))
    if dataclasses.is_dataclass(TrainConfig) and action.dest in {f.name for f in dataclasses.fields(TrainConfig)}:
        values = {"out": str(tmp_path / "valid"), action.dest: getattr(args, action.dest)}
        if action.dest in ("stop_at", "branch_from"):  # each needs the other's absence only
            values["epochs"] = 2
        if action.dest == "test_speaker":
            values.update(dataset="fsdd", model="audio_cnn")
        if action.dest == "proxy_width":
            values["proxy_model"] = "cnn"
        if action.dest in ("init_strict", "backbone_lr_scale"):
            values["init"] = str(tmp_path / "init.pt")
        if action.dest in ("test_fraction", "split_seed", "skip_bad"):  # options of folder data
            values.update(dataset="folder", data=str(tmp_path / "data"))
        if action.dest in ("keep", "patience"):  # each chooses on a validation split
            values["val_fraction"] = 0.1
        validate_config(TrainConfig(**values))


@pytest.mark.parametrize("command", list(COMMANDS))
@pytest.mark.parametrize("action", OPTIONS)
def test_every_train_option_is_honoured_or_refused(command, action, tmp_path, monkeypatch, capsys):
    _files(tmp_path)
    code, plain = _resolve(command, _argv(command, tmp_path, []), monkeypatch)
    assert plain is not None, f"{command} without the option did not resolve: {capsys.readouterr().err}"
    sample = _sample(action, tmp_path)
    capsys.readouterr()
    code, resolved = _resolve(command, _argv(command, tmp_path, sample), monkeypatch)
    err = capsys.readouterr().err.strip()
    if resolved is None:  # refused: one line, exit 2, naming the option
        assert code == 2 and "\n" not in err and "Traceback" not in err, (code, err)
        flags = [flag.lstrip("-") for flag in action.option_strings]
        names = (*action.option_strings, *flags, action.dest, option_flag(action.dest))
        assert any(name in err for name in names), f"{' '.join(sample)} refused without naming it: {err}"
        return
    expected = getattr(_train_parser().parse_args(sample), action.dest)
    assert resolved != plain, f"{command} dropped {' '.join(sample)}: its resolved configuration is unchanged"
    if action.dest in plain or (command == "compare" and action.dest in next(iter(plain["runs"].values()))):
        assert _recorded(resolved, action.dest, expected, command), f"{command} dropped {' '.join(sample)}"
