"""Pure measures: statistics, regression verdicts, distillation evidence, figures, FLOPs, device
peaks, costing and probe agreement — functions from records and numbers to typed results.

No pytest, no session, no lm-eval, no model runs, no files of the project's own (the
``forbidden`` contract in pyproject.toml). Two measures read the machine, and say so: ``hardware``
measures the CPU's matmul peak once and caches it, and ``flops.counting`` wraps a model call in
torch's FLOP counter for ``--distillbench-flops measured``. May import ``records``, ``spec``
values and ``errors``; the engine, the store, the reports and the pytest face import it, never
the reverse.
"""
