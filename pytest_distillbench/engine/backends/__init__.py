"""Backends turn a ``ModelSpec`` into an lm-eval ``LM``.

Each backend module exposes ``available() -> str | None`` (None when usable, else the reason it
is skipped) and ``build(spec, settings) -> lm_eval.api.model.LM``. Imports of heavy engines
happen inside those functions so a missing engine is a skip reason, never an import error.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from ...errors import DistillbenchError
from ...spec.models import BACKENDS


def backend_module(name: str) -> ModuleType:
    if name not in BACKENDS:
        raise DistillbenchError(f"unknown backend {name!r}", key="backend",
                                fix=f"use one of: {', '.join(BACKENDS)}")
    return importlib.import_module(f"{__name__}.{name.replace('-', '_')}")


def load_error(spec: object, exc: BaseException, what: str, fix: str) -> DistillbenchError:
    """One readable error for a model an engine could not load (first line of its message)."""
    text = str(exc).strip()
    first = text.splitlines()[0] if text else type(exc).__name__
    name = getattr(spec, "name", "?")
    return DistillbenchError(f"{what} {name!r} cannot be loaded from {getattr(spec, 'path', '?')} ({first})",
                             key=f"models.{name}.path", fix=fix)
