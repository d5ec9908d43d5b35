"""Suite-facing names for code tasks (see ``engine/tasks/code.py`` for what they do)."""

from __future__ import annotations

import sys

from ..engine.tasks.code import load_humaneval, process_results

__all__ = ["load_humaneval", "process_results"]

# lm-eval resolving a task's ``!function`` has imported itself already: register the sandbox
# filter for it (the plugin registers it itself before it evaluates).
if "lm_eval" in sys.modules:
    from ..engine.tasks import code_filter  # noqa: F401  (registers on import)
