"""``python -m pytest_distillbench.serve CHECKPOINT``: the loopback OpenAI-compatible server
(implemented in ``engine/serve.py``; this path is the documented entry point)."""

from __future__ import annotations

from .engine.serve import main

if __name__ == "__main__":
    raise SystemExit(main())
