"""Backends turn a ``ModelSpec`` into an lm-eval ``LM``.

Each backend module exposes ``available() -> str | None`` (None when usable, else the reason it
is skipped) and ``build(spec, settings) -> lm_eval.api.model.LM``. Imports of heavy engines
happen inside those functions so a missing engine is a skip reason, never an import error.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from ..errors import DistillbenchError
from ..models import BACKENDS


def backend_module(name: str) -> ModuleType:
    if name not in BACKENDS:
        raise DistillbenchError(f"unknown backend {name!r}", key="backend",
                                fix=f"use one of: {', '.join(BACKENDS)}")
    return importlib.import_module(f"{__name__}.{name}")
