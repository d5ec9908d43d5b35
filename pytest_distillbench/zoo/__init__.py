"""The embedded default models: a teacher, a distilled student and eight independent controls.

Checkpoints live in ``teacher/``, ``student/`` and ``control-01/`` ... ``control-08/`` beside this
file; the code that trains them is in this package (``distillbench zoo build``).
"""

from __future__ import annotations

from pathlib import Path

from ..spec.models import ZOO_CONTROLS as ZOO_CONTROLS
from ..spec.models import ZOO_DIR as ZOO_DIR  # re-exported: zoo.build and the tests use it
from ..spec.models import zoo_checkpoint

DEFAULT_MODELS = {"teacher": "teacher", "student": "student", **{c: c for c in ZOO_CONTROLS}}


def checkpoint(name: str) -> Path:
    return zoo_checkpoint(name)
