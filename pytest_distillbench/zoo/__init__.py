"""The embedded default models: a teacher, a distilled student and an independent control.

Checkpoints live in ``teacher/``, ``student/`` and ``control/`` beside this file; the code that
trains them is in this package (``distillbench zoo build``).
"""

from __future__ import annotations

from pathlib import Path

ZOO_DIR = Path(__file__).resolve().parent
DEFAULT_MODELS = {"teacher": "teacher", "student": "student", "control": "control"}


def checkpoint(name: str) -> Path:
    return ZOO_DIR / name
