"""The command line's side of ``TrainConfig``: one option per field, TOML config files, and how typed options,
a preset, a config file and a resumed run's saved config combine (``config_from_args``).

Part of the command line (with ``cli`` and ``cli.commands``): reads the environment and config files, never argv.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import sys
import time
import types
import typing
from pathlib import Path
from typing import Any

from lossaug.errors import InputError
from lossaug.kinds import kind_of_dataset
from lossaug.run.config import PRESETS, RENAMED, TrainConfig

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

__all__ = [
    "UsageError",
    "add_config_options",
    "config_from_args",
    "default_cache_dir",
    "load_config_file",
    "load_protocol_file",
    "option_flag",
]


class UsageError(Exception):
    """Bad command-line input: reported as one line, exit status 2."""


def default_cache_dir() -> Path:
    """``$LOSSAUG_CACHE``, else ``$XDG_CACHE_HOME/lossaug``, else ``~/.cache/lossaug``."""
    if os.environ.get("LOSSAUG_CACHE"):
        return Path(os.environ["LOSSAUG_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "lossaug"


# ---------------------------------------------------------------- TrainConfig <-> options


def _field_type(f: dataclasses.Field) -> tuple[type, bool]:
    """The scalar type of a config field and whether it may be None."""
    hint = typing.get_type_hints(TrainConfig)[f.name]
    args = typing.get_args(hint)
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        scalar = next(a for a in args if a is not type(None))
        return scalar, type(None) in args
    return hint, False


def _converter(f: dataclasses.Field):
    scalar, optional = _field_type(f)

    def convert(text: Any) -> Any:
        if optional and (text is None or (isinstance(text, str) and text.lower() == "none")):
            return None
        if scalar is int and isinstance(text, (float, bool)):
            raise InputError(f"expected an integer, got {text!r}")
        if scalar is float and isinstance(text, str) and text.lower() in ("inf", "infinity"):
            return math.inf
        return scalar(text)

    convert.__name__ = scalar.__name__  # argparse names the type in its error message
    return convert


def option_flag(name: str) -> str:
    """The option of a field or argument name: ``batch_size`` -> ``--batch-size``."""
    return "--" + name.replace("_", "-")


def add_config_options(parser: argparse.ArgumentParser, out_help: str | None = None) -> None:
    """One option per ``TrainConfig`` field, defaults suppressed so that only typed options override. A bool
    field is a flag: ``--name`` when it defaults to False, ``--no-name`` when it defaults to True. ``out_help``
    replaces ``--out``'s help in a command whose ``--out`` is not one run's directory (compare, advise)."""
    for f in dataclasses.fields(TrainConfig):
        if f.type in (bool, "bool"):
            flag = option_flag(f.name) if not f.default else "--no-" + f.name.replace("_", "-")
            action = "store_false" if f.default else "store_true"
            parser.add_argument(flag, dest=f.name, action=action, default=argparse.SUPPRESS, help=f.metadata["help"])
            continue
        choices = f.metadata.get("choices")
        # What the CLI does when the option is not typed, where that differs from the field's default (--out).
        default = f.metadata.get("cli_default", f.default if f.default is not None else "none")
        parser.add_argument(
            f.metadata.get("option", option_flag(f.name)),
            dest=f.name,
            type=_converter(f),
            choices=choices,
            default=argparse.SUPPRESS,
            metavar="{" + ",".join(choices) + "}" if choices else f.metadata.get("option_metavar", f.name.upper()),
            help=out_help if f.name == "out" and out_help else f"{f.metadata['help']} (default: {default})",
        )


def load_config_file(path: Path) -> dict[str, Any]:
    """Fields from a TOML file, keys named like the options (``batch-size`` or ``batch_size``).

    Layout: every option at the top level of the file, or every option in a ``[train]`` table (the layout of a
    ``lossaug compare --protocol`` file, whose ``[compare]`` table that command reads and this one skips). Option
    keys at the top level beside a ``[train]`` table are an error naming them, as is any unknown key. Values are
    checked as TOML types: a float option takes a TOML number (``lr = 1`` is 1.0; ``inf`` is a TOML float), an
    integer option an integer, a text option a string, a flag ``true`` or ``false``; ``"none"`` clears an option
    that may be None. A boolean or a string where a number belongs (``lr = true``, ``lr = "0.1"``) is an error
    naming the file and the key.
    """
    try:
        raw = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise UsageError(f"config file {path} does not exist") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise UsageError(f"config file {path} is not valid TOML: {error}") from None
    if "train" in raw:
        if not isinstance(raw["train"], dict):
            raise UsageError(f"config file {path}: 'train' must be a [train] table of options")
        misplaced = sorted(k for k in raw if k not in ("train", "compare"))
        if misplaced:
            raise UsageError(
                f"config file {path} has a [train] table and also options outside it: {misplaced}; put every "
                "option in [train] (or drop the table header)"
            )
        raw = raw["train"]
    kinds = {bool: "a boolean", int: "an integer", float: "a float", str: "a string", dict: "a table", list: "an array"}
    fields = {f.name: f for f in dataclasses.fields(TrainConfig)}
    values: dict[str, Any] = {}
    for key, value in raw.items():
        name = key.replace("-", "_")
        name = RENAMED.get(name, name)
        if name not in fields:
            raise UsageError(f"unknown option {key!r} in config file {path}; valid: {sorted(fields)}")
        if name in values:
            raise UsageError(f"option {name!r} is given twice in config file {path} (as {key!r} too)")
        scalar, optional = _field_type(fields[name])
        kind = kinds.get(type(value), f"a {type(value).__name__}")
        if optional and isinstance(value, str) and value.lower() == "none":
            values[name] = None
            continue
        if scalar is float and type(value) in (int, float):
            values[name] = float(value)
        elif scalar in (bool, int, str) and type(value) is scalar:
            values[name] = value
        else:
            expected = kinds.get(scalar, scalar.__name__) + (' or "none"' if optional else "")
            raise UsageError(f"bad value {value!r} for {key!r} in config file {path}: expected {expected}, got {kind}")
        choices = fields[name].metadata.get("choices")
        if choices and values[name] not in choices:
            raise UsageError(f"bad value {value!r} for {key!r} in config file {path}; choose from {list(choices)}")
    return values


def load_protocol_file(path: Path) -> tuple[dict[str, Any], TrainConfig]:
    """A pre-registered protocol file (``lossaug compare --protocol``): its ``[compare]`` table as read, and the
    ``TrainConfig`` of its ``[train]`` table (read by ``load_config_file``; the cache directory defaults as usual)."""
    try:
        raw = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise UsageError(f"protocol file {path} does not exist") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise UsageError(f"protocol file {path} is not valid TOML: {error}") from None
    if set(raw) != {"compare", "train"}:
        raise UsageError(f"protocol file {path} must hold a [compare] and a [train] table only, got {sorted(raw)}")
    base = TrainConfig(**{"cache_dir": str(default_cache_dir()), **load_config_file(path)})
    return raw["compare"], base


def config_from_args(args: argparse.Namespace, base: dict[str, Any] | None = None) -> TrainConfig:
    """Defaults < ``base`` (a resumed run's config) or ``--preset`` < ``--config`` file < options typed.

    Audio data with no model named at any of these levels trains ``audio_cnn``; a ``data`` path that exists is
    made absolute."""
    values: dict[str, Any] = dict(base) if base else dict(PRESETS[args.preset]) if args.preset else {}
    if args.config:
        values.update(load_config_file(Path(args.config)))
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    values.update({k: v for k, v in vars(args).items() if k in names})
    values.setdefault("cache_dir", str(default_cache_dir()))
    default_model = kind_of_dataset(values.get("dataset", TrainConfig.dataset)).default_model
    if "model" not in values and default_model is not None:
        values["model"] = default_model  # no network named: the one that takes the data's kind
    if values.get("data") and Path(values["data"]).exists():
        values["data"] = str(Path(values["data"]).absolute())  # the run records where its data are, from anywhere
    if not values.get("out"):
        stamp = time.strftime("%Y%m%d-%H%M%S")
        values["out"] = str(
            Path("runs") / f"{stamp}-{values.get('dataset', 'mini')}-{values.get('method', 'proposed')}"
        )
    return TrainConfig(**values)
