"""Peak FLOP/s of the device a model runs on, the denominator of MFU.

GPUs: dense (no structured sparsity) peaks from NVIDIA's datasheets. The datasheets print the
tensor-core figures *with* 2:4 sparsity and note that dense throughput is half; the table holds
the dense half. CPUs have no datasheet figure worth trusting across SKUs and thread settings, so
their peak is measured once with a short matmul benchmark and cached per machine.

An unknown device gives ``Peak(None, reason)``: MFU then stays unknown rather than guessed.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import re
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CACHE_FILE = "cpu-peaks.json"


@dataclass(frozen=True)
class Peak:
    """A device's peak FLOP/s at one dtype, and where the figure comes from (or why it is None)."""

    flops_per_s: float | None
    source: str


# dense TFLOP/s by dtype; ``sparse_note`` marks figures halved from the datasheet's sparse ones
_A100 = {"fp32": 19.5, "tf32": 156.0, "bf16": 312.0, "fp16": 312.0}
_H100_SXM = {"fp32": 67.0, "tf32": 494.5, "bf16": 989.5, "fp16": 989.5}
_H100_PCIE = {"fp32": 51.0, "tf32": 378.0, "bf16": 756.5, "fp16": 756.5}

_A100_SHEET = "NVIDIA A100 Tensor Core GPU datasheet"
_H100_SHEET = "NVIDIA H100 Tensor Core GPU datasheet"
_H200_SHEET = "NVIDIA H200 Tensor Core GPU datasheet"

GPU_PEAKS_TFLOPS: dict[str, tuple[dict[str, float], str]] = {
    "A100 SXM4 40GB": (_A100, _A100_SHEET),
    "A100 SXM4 80GB": (_A100, _A100_SHEET),
    "A100 PCIe 40GB": (_A100, _A100_SHEET),
    "A100 PCIe 80GB": (_A100, _A100_SHEET),
    "H100 SXM5": (_H100_SXM, _H100_SHEET),
    "H100 PCIe": (_H100_PCIE, _H100_SHEET),
    # same GH100 compute as the H100 SXM; only the memory differs
    "H200 SXM": (_H100_SXM, _H200_SHEET),
}

_DTYPES = {
    "float32": "fp32", "fp32": "fp32", "float": "fp32",
    "tf32": "tf32", "tensorfloat32": "tf32",
    "bfloat16": "bf16", "bf16": "bf16",
    "float16": "fp16", "fp16": "fp16", "half": "fp16",
}


def normalize_dtype(dtype: Any) -> str | None:
    """'fp32' / 'tf32' / 'bf16' / 'fp16' for a dtype name or ``torch.dtype``; None if unknown."""
    return _DTYPES.get(str(dtype).lower().removeprefix("torch."))


def gpu_variant(name: str) -> str | None:
    """The table entry for a CUDA device name (as ``torch.cuda.get_device_name`` reports it)."""
    upper = name.upper()
    memory = "80GB" if "80GB" in upper else "40GB" if "40GB" in upper else None
    if re.search(r"\bA100\b", upper):
        if "SXM" in upper and memory:
            return f"A100 SXM4 {memory}"
        if "PCIE" in upper and memory:
            return f"A100 PCIe {memory}"
        return None
    if re.search(r"\bH100\b", upper):
        if "NVL" in upper:
            return None  # a different board (power, clocks) with its own figures
        if "PCIE" in upper:
            return "H100 PCIe"
        if "SXM" in upper or "HBM3" in upper:  # the SXM5 part reports as "H100 80GB HBM3"
            return "H100 SXM5"
        return None
    if re.search(r"\bH200\b", upper) and "NVL" not in upper:  # \b keeps GH200 out
        return "H200 SXM"
    return None


def gpu_peak(name: str, dtype: Any) -> Peak:
    """Dense datasheet peak for a named NVIDIA GPU; ``Peak(None, reason)`` if not in the table."""
    if "MIG" in name.upper():
        return Peak(None, f"{name!r} is a MIG slice: its peak is a fraction of the whole GPU's")
    kind = normalize_dtype(dtype)
    if kind is None:
        return Peak(None, f"no peak figure for dtype {dtype!r}")
    variant = gpu_variant(name)
    if variant is None:
        return Peak(None, f"GPU {name!r} is not in the peak table ({', '.join(GPU_PEAKS_TFLOPS)})")
    figures, sheet = GPU_PEAKS_TFLOPS[variant]
    note = "" if kind == "fp32" else ", dense = half the figure shown with sparsity"
    return Peak(figures[kind] * 1e12, f"{sheet}: {variant} {kind} {figures[kind]:g} TFLOP/s{note}")


def _cuda_matmul_dtype(kind: str) -> str:
    """fp32 matmuls run on TF32 tensor cores when torch is told it may (precision 'high'/'medium')."""
    import torch

    if kind == "fp32" and torch.get_float32_matmul_precision() != "highest":
        return "tf32"
    return kind


def device_peak(device: str, dtype: Any, *, cache_dir: Path | None = None) -> Peak:
    """Peak FLOP/s of ``device`` ('cpu', 'cuda', 'cuda:1', 'auto') at ``dtype``."""
    import torch

    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    kind = normalize_dtype(dtype)
    if kind is None:
        return Peak(None, f"no peak figure for dtype {dtype!r}")
    if device == "cpu":
        return cpu_peak(kind, cache_dir=cache_dir)
    if device == "cuda" or device.startswith("cuda:"):
        if not torch.cuda.is_available():
            return Peak(None, "CUDA is not available")
        index = int(device.partition(":")[2] or torch.cuda.current_device())
        return gpu_peak(torch.cuda.get_device_name(index), _cuda_matmul_dtype(kind))
    return Peak(None, f"no peak figures for device {device!r}")


# --------------------------------------------------------------------------- CPU


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/pytest-distillbench``, or ``~/.cache/pytest-distillbench``."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "pytest-distillbench"


def cpu_name() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    return platform.processor() or platform.machine() or "unknown cpu"


def cpu_cache_key(kind: str) -> str:
    """What decides a CPU's matmul throughput: model, cores, torch's threads and build, dtype."""
    import torch

    return (f"{cpu_name()} | {os.cpu_count()} cores | {torch.get_num_threads()} threads"
            f" | torch {torch.__version__} | {kind}")


def measure_matmul_flops(dtype: Any, *, seconds: float = 0.5, size: int = 512) -> float:
    """Best attained FLOP/s of ``size``×``size`` torch matmuls at ``dtype`` within ~``seconds``."""
    import torch

    kind = normalize_dtype(dtype)
    torch_dtype = {"fp32": torch.float32, "tf32": torch.float32, "bf16": torch.bfloat16,
                   "fp16": torch.float16}[kind or ""]
    generator = torch.Generator().manual_seed(0)
    a = torch.randn(size, size, generator=generator).to(torch_dtype)
    b = torch.randn(size, size, generator=generator).to(torch_dtype)
    out = torch.empty(size, size, dtype=torch_dtype)
    torch.matmul(a, b, out=out)  # warm-up: thread pool, kernel selection
    best = float("inf")
    deadline = time.perf_counter() + seconds
    runs = 0
    while runs < 3 or time.perf_counter() < deadline:
        start = time.perf_counter()
        torch.matmul(a, b, out=out)
        best = min(best, time.perf_counter() - start)
        runs += 1
    return 2.0 * size**3 / best


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    from filelock import FileLock

    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path) + ".lock"):
        yield


def _read_cache(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}  # missing or damaged: measure again and rewrite
    return data if isinstance(data, dict) else {}


def _write_atomic(path: Path, data: dict[str, Any]) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(data, handle, indent=2, sort_keys=True)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def cpu_peak(dtype: Any, *, cache_dir: Path | None = None, seconds: float = 0.5) -> Peak:
    """Measured matmul peak of this CPU at ``dtype``, cached per machine in a JSON file.

    The lock is held while measuring so parallel workers do not benchmark at once (they would
    share the cores and each measure too little); the later ones read the first one's result.
    A CPU has no TF32: 'tf32' is measured as fp32.
    """
    kind = normalize_dtype(dtype)
    if kind is None:
        return Peak(None, f"no peak figure for dtype {dtype!r}")
    kind = "fp32" if kind == "tf32" else kind
    path = (default_cache_dir() if cache_dir is None else Path(cache_dir)) / CACHE_FILE
    key = cpu_cache_key(kind)
    with _locked(path):
        entry = _read_cache(path).get(key)
        if isinstance(entry, dict) and isinstance(entry.get("flops_per_s"), (int, float)):
            return Peak(float(entry["flops_per_s"]), f"{entry.get('source', 'measured')} (cached in {path})")
        flops = measure_matmul_flops(kind, seconds=seconds)
        source = f"measured: best 512x512 {kind} torch matmul on {key}"
        data = _read_cache(path)
        data[key] = {"flops_per_s": flops, "source": source, "measured_at": time.time()}
        _write_atomic(path, data)
    return Peak(flops, source)


# Device nodes of the accelerators torch reaches through torch.cuda (NVIDIA, ROCm, WSL's GPU).
_GPU_NODES = ("/dev/nvidiactl", "/dev/kfd", "/dev/dxg")


def surely_no_gpu() -> bool:
    """True when torch certainly sees no GPU: Linux with none of the GPU device nodes. Answered
    without importing torch, so a warm run from the cache stays light."""
    return sys.platform == "linux" and not any(os.path.exists(node) for node in _GPU_NODES)
