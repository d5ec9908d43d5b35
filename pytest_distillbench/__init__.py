"""pytest-distillbench: evaluate teacher and distilled student models as pytest tests.

Importing this package must stay cheap: torch and lm_eval are imported lazily, only when a
session runs with ``--distillbench``.
"""

__version__ = "0.1.0"
