"""Attach what an evaluation cost (tokens, seconds, FLOPs, MFU, dollars) to a ``TaskRun``.

FLOPs come from ``flops.py``'s analytic estimator applied to each item's real token counts, so
any backend with a known architecture gets them; a model behind an API can declare its
parameters or a price in settings. With neither, FLOPs stay ``None`` (unknown), never a guess.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from ..records import Cost, TaskRun
from ..spec.models import ModelSpec


def architecture_for(spec: ModelSpec, config: dict[str, Any] | None) -> Any:
    from ..errors import DistillbenchError
    from .flops import Architecture

    if spec.params is not None:
        return Architecture.declared(spec.params, spec.active_params)
    if config is None:
        return None
    try:
        return Architecture.from_config(config)
    except DistillbenchError:
        return None  # an architecture the estimator does not know: cost stays unknown


def attach_cost(run: TaskRun, lm: Any, backend: Any, spec: ModelSpec, settings: Any, device: str,
                measured_flops: float | None = None) -> TaskRun:
    from .flops import dollar_cost, item_flops, mfu
    from .hardware import device_peak

    config = backend.model_config(lm) if hasattr(backend, "model_config") else None
    arch = architecture_for(spec, config)
    records = run.records
    prefill = decode = None
    if arch is not None:
        new_records = []
        prefill = decode = 0.0
        for r in records:
            if not r.requests:  # no token counts (a backend without a tokenizer): unknown
                prefill = decode = None
                break
            p, d = item_flops(arch, r)
            prefill += p
            decode += d
            new_records.append(replace(r, flops=p + d))
        else:
            records = tuple(new_records)
    total = None if prefill is None else prefill + (decode or 0.0)
    source = "unknown" if total is None else ("declared" if spec.params is not None else "analytic")
    if measured_flops is not None:
        total, source = measured_flops, "measured"
    counted = bool(records) and all(rec.requests for rec in records)  # else: no tokenizer, unknown
    prompt_tokens = sum(r.context_tokens for rec in records for r in rec.requests) if counted else None
    output_tokens = sum(r.output_tokens for rec in records for r in rec.requests) if counted else None
    peak = device_peak(device, spec.dtype) if spec.backend in ("hf", "vllm") else None
    peak_flops = getattr(peak, "flops_per_s", None)
    cost = Cost(
        requests=sum(len(r.requests) for r in records),
        prompt_tokens=prompt_tokens,
        output_tokens=output_tokens,
        seconds=run.wall_seconds,
        flops=total,
        prefill_flops=prefill,
        decode_flops=decode,
        flops_per_second=None if total is None or run.wall_seconds <= 0 else total / run.wall_seconds,
        mfu=mfu(total, run.wall_seconds, peak_flops),
        dollars=None if not counted else dollar_cost(prompt_tokens, output_tokens, spec.price_in_per_1k,
                                                     spec.price_out_per_1k),
        flops_source=source,
    )
    meta = dict(run.meta)
    if peak is not None:
        meta["peak_flops_per_s"] = peak_flops
        meta["peak_source"] = getattr(peak, "source", None)
    return replace(run, records=records, cost=cost, meta=meta)
