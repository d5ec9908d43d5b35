"""What to run, as data: settings, suite files and their tasks, model declarations.

Owns parsing and validating the user's input (``[tool.distillbench]``, the command line, suite
YAML, user data files for the ``data:`` shortcut). Runs no model and imports no torch or
lm-eval. May import only ``errors`` and ``fileio``; everything else imports it.
"""
