"""lm-eval glue: ``custom_dataset`` loaders and ``process_results`` hooks that suite YAMLs name
with ``!function pytest_distillbench.tasks.<module>.<name>``."""
