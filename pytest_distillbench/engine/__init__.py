"""Runs models: evaluation through lm-eval (once per model and task, cached), the backends
(transformers, vLLM, OpenAI-compatible servers), code execution in the sandbox, next-token
probes, xdist sharding and the loopback test server.

Knows no pytest item and no report. May import ``store`` (its result cache and the run
environment), ``measures`` (costs), ``records``, ``spec``, ``errors`` and ``fileio``.
"""
