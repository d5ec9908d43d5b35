"""``math_verify``: an lm-eval metric that compares math answers as values, through Hugging
Face's ``math-verify`` (``pip install math-verify``), so ``1/2``, ``0.5``, ``\\frac{1}{2}`` and
``\\boxed{0.5}`` are one answer. A suite opts in per task::

    metric: math_verify,final_number
    lm_eval:
      ...
      metric_list: [{metric: math_verify}]

Both the target and the response are parsed with math-verify's LaTeX and plain-expression
extraction (a ``\\boxed{}`` answer wins, else the last expression); an answer it cannot parse
scores 0. Registered in lm-eval's metric registry when the plugin evaluates (``register()``).
"""

from __future__ import annotations

from typing import Any

from ...errors import DistillbenchError

METRIC = "math_verify"


def _require() -> Any:
    try:
        import math_verify
    except ImportError:
        raise DistillbenchError("the math_verify metric needs the math-verify package", key="metric",
                                fix="pip install 'pytest-distillbench[math]' (or pip install math-verify)"
                                ) from None
    return math_verify


def _parse(text: str) -> list[Any]:
    mv = _require()
    configs = [mv.LatexExtractionConfig(), mv.ExprExtractionConfig()]
    parsed = mv.parse(text, extraction_config=configs)
    if not parsed and "$" not in text and "\\" in text:  # bare LaTeX without math delimiters
        parsed = mv.parse(f"${text}$", extraction_config=configs)
    return parsed


def equivalent(target: str, response: str) -> bool:
    """True when math-verify finds the response's answer equal to the target's as a value."""
    mv = _require()
    gold, answer = _parse(str(target)), _parse(str(response))
    if not gold or not answer:
        return False
    return bool(mv.verify(gold, answer))


def math_verify_fn(references: list[Any], predictions: list[Any], **_: Any) -> float:
    """lm-eval's generation-metric interface: one reference and one prediction per call."""
    return float(all(equivalent(str(r), str(p)) for r, p in zip(references, predictions, strict=True)))


def register() -> None:
    """Register the metric with lm-eval (idempotent)."""
    import lm_eval.api.metrics  # noqa: F401  (registers the aggregations, "mean" among them)
    from lm_eval.api.registry import METRIC_REGISTRY, register_metric

    if METRIC in METRIC_REGISTRY:
        return
    register_metric(metric=METRIC, higher_is_better=True, output_type="generate_until",
                    aggregation="mean")(math_verify_fn)
