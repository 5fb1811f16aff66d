"""Your own network in the training app: ``--model PACKAGE.MODULE:FACTORY``.

The factory is any callable that takes ``num_classes=`` (and ``in_channels=`` and ``width=`` when its signature
accepts them) and returns an ``nn.Module`` mapping normalised inputs ``(B,C,H,W)`` (or waveforms ``(B,C,T)``) to
logits ``(B,num_classes)``. ``models.build_model`` calls it in place of a built-in network, so a factory model gets
the same normalisation wrapper, device placement, checkpoints and resume. The module is imported by name, the
current directory first (as ``python -m`` does); a bad name, a failed import (a missing module, a syntax error, or
an exception raised by the module's own code while importing: one line naming its file and line), a missing factory
or one that returns something else is an ``InputError`` naming the option. An exception raised inside the factory
call, or in the model's forward, is the user's bug in code lossaug runs on purpose and keeps its traceback (the
model's output is then checked by ``models.check_classifier_output``).
"""

from __future__ import annotations

import importlib
import inspect
import os
import re
import sys
import traceback
from collections.abc import Callable, Mapping
from typing import Any

from torch import nn

from lossaug.errors import InputError

__all__ = ["FACTORY_FORM", "build_factory_model", "import_factory", "is_factory_name"]

FACTORY_FORM = "PACKAGE.MODULE:FACTORY"
_FACTORY = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")


def is_factory_name(name: str) -> bool:
    """Whether ``name`` has the form ``PACKAGE.MODULE:FACTORY`` (attribute paths like ``mod:Class.create`` too)."""
    return bool(_FACTORY.match(name))


def import_factory(name: str) -> Callable[..., nn.Module]:
    """The callable ``name`` points to, its module imported with the current directory on the path."""
    if not is_factory_name(name):
        raise InputError(f"--model {name!r} is neither a built-in network nor of the form {FACTORY_FORM}")
    module_name, attribute = name.split(":")
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:
        sys.path.insert(0, cwd)  # the user's own module, as `python -m` would find it
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        hint = (
            f"it is looked for in the current directory ({cwd}) and on PYTHONPATH: run lossaug from the folder "
            f"holding {module_name.split('.')[0]}, or add that folder to PYTHONPATH"
        )
        raise InputError(f"--model {name}: cannot import {module_name!r}: {error}; {hint}") from None
    except SyntaxError as error:
        raise InputError(f"--model {name}: {error.filename} line {error.lineno}: SyntaxError: {error.msg}") from None
    except Exception as error:  # the module's own code raised while importing: one line saying where
        where = _where(error)  # LOSSAUG_DEBUG=1 shows the chained traceback
        raise InputError(
            f"--model {name}: importing {module_name!r} failed at {where}: {type(error).__name__}: {error}"
        ) from error
    factory: Any = module
    for part in attribute.split("."):
        factory = getattr(factory, part, None)
        if factory is None:
            raise InputError(f"--model {name}: module {module_name!r} has no {attribute!r}")
    if not callable(factory):
        raise InputError(f"--model {name}: {attribute!r} is {type(factory).__name__!r}, not a callable")
    return factory


def _where(error: BaseException) -> str:
    """``file line N`` of the innermost frame of ``error``'s traceback."""
    frames = traceback.extract_tb(error.__traceback__)
    return f"{frames[-1].filename} line {frames[-1].lineno}" if frames else "import"


def build_factory_model(
    name: str, num_classes: int, in_channels: int, width: int | None, *, sample_rate: int | None = None
) -> nn.Module:
    """Call the factory ``name`` with ``num_classes=`` and, when it accepts them, ``in_channels=`` and ``width=``
    (``width`` only when set: a factory without it takes no ``--width``); ``sample_rate=`` (Hz, audio data) when
    set and the factory names it among its parameters."""
    factory = import_factory(name)
    parameters: Mapping[str, inspect.Parameter]
    try:
        parameters = inspect.signature(factory).parameters
    except (TypeError, ValueError):  # some builtins have no signature: pass num_classes only
        parameters = {}
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())
    kwargs: dict = {"num_classes": num_classes}
    if "in_channels" in parameters or takes_any:
        kwargs["in_channels"] = in_channels
    if width is not None:
        if "width" not in parameters and not takes_any:
            raise InputError(f"--model {name} takes no width argument; drop --width {width}")
        kwargs["width"] = width
    if sample_rate is not None and "sample_rate" in parameters:
        kwargs["sample_rate"] = sample_rate
    if parameters and "num_classes" not in parameters and not takes_any:
        raise InputError(f"--model {name}: the factory must accept num_classes= (its parameters: {list(parameters)})")
    model = factory(**kwargs)
    if not isinstance(model, nn.Module):
        raise InputError(f"--model {name} returned {type(model).__name__!r}, not a torch.nn.Module")
    return model
