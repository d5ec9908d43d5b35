"""BIG-bench's answer post-processing as an lm-eval filter (``distillbench_bigbench``).

The semantics (stop string kept, first match of the output regex, nothing stripped) live in
``spec/userdata.py`` next to the rest of BIG-bench's format; this module only registers them
with lm-eval, which the suites' BIG-bench tasks name in their filter pipeline.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ...spec.userdata import postprocess


def register() -> None:
    from lm_eval.api.filter import Filter
    from lm_eval.api.registry import FILTER_REGISTRY, register_filter

    if "distillbench_bigbench" in FILTER_REGISTRY:
        return

    @register_filter("distillbench_bigbench")
    class BigBenchPostprocess(Filter):
        def __init__(self, stop_string: str | None = None, output_regex: str | None = None,
                     **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.stop_string, self.output_regex = stop_string, output_regex

        def apply(self, resps: Iterable[list[str]], docs: list[dict]) -> Iterable[list[str]]:
            return [[postprocess(r, self.stop_string, self.output_regex) if isinstance(r, str) else r
                     for r in group] for group in resps]
