"""The stable names suite YAMLs use for lm-eval hooks: ``!function
pytest_distillbench.tasks.code.process_results`` and ``...code.load_humaneval``.

A suite's template hash includes these strings, so they stay put while the implementations
live in ``engine.tasks`` (moving them would make every stored baseline "not comparable").
"""
