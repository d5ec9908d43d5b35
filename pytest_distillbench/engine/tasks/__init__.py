"""lm-eval glue for tasks: code execution and scoring (``code``) and its lm-eval filter
(``code_filter``). Suite YAMLs name these through the stable path ``pytest_distillbench.tasks``."""
