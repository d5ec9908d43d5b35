"""Device peaks: the datasheet table, name matching, and the cached CPU matmul benchmark."""

from __future__ import annotations

import json
import math

import pytest
import torch

from pytest_distillbench.measures import hardware
from pytest_distillbench.measures.hardware import (
    CACHE_FILE,
    Peak,
    cpu_cache_key,
    cpu_peak,
    device_peak,
    gpu_peak,
    gpu_variant,
    measure_matmul_flops,
    normalize_dtype,
)

# ----------------------------------------------------------------------------- GPU table


@pytest.mark.parametrize(("name", "dtype", "tflops"), [
    ("NVIDIA A100-SXM4-40GB", "bfloat16", 312.0),
    ("NVIDIA A100-SXM4-80GB", "tf32", 156.0),
    ("NVIDIA A100-PCIE-40GB", "float32", 19.5),
    ("NVIDIA A100 80GB PCIe", torch.float16, 312.0),
    ("NVIDIA H100 80GB HBM3", "bf16", 989.5),
    ("NVIDIA H100 80GB HBM3", "fp32", 67.0),
    ("NVIDIA H100 PCIe", "bfloat16", 756.5),
    ("NVIDIA H100 PCIe", "tf32", 378.0),
    ("NVIDIA H200", torch.bfloat16, 989.5),
    ("NVIDIA H200", "half", 989.5),
])
def test_datasheet_peaks(name, dtype, tflops):
    peak = gpu_peak(name, dtype)
    assert peak.flops_per_s == pytest.approx(tflops * 1e12)
    assert "datasheet" in peak.source


@pytest.mark.parametrize(("name", "variant"), [
    ("NVIDIA A100-SXM4-40GB", "A100 SXM4 40GB"),
    ("NVIDIA A100 80GB PCIe", "A100 PCIe 80GB"),
    ("NVIDIA H100 80GB HBM3", "H100 SXM5"),
    ("NVIDIA H100 PCIe", "H100 PCIe"),
    ("NVIDIA H200", "H200 SXM"),
    ("NVIDIA GH200 480GB", None),  # contains "H200" but is a different part
    ("NVIDIA H200 NVL", None),
    ("NVIDIA H100 NVL", None),
    ("NVIDIA A100X", None),
    ("Tesla T4", None),
])
def test_gpu_names_match_only_their_own_entry(name, variant):
    assert gpu_variant(name) == variant


@pytest.mark.parametrize("name", ["Tesla T4", "NVIDIA GH200 480GB", "NVIDIA H100 NVL"])
def test_unknown_gpu_has_no_peak_and_says_why(name):
    peak = gpu_peak(name, "bf16")
    assert peak.flops_per_s is None
    assert name in peak.source and "not in the peak table" in peak.source


def test_mig_slice_and_unknown_dtype_have_no_peak():
    assert gpu_peak("NVIDIA A100-SXM4-40GB MIG 1g.5gb", "bf16").flops_per_s is None
    assert gpu_peak("NVIDIA H100 80GB HBM3", "int8") == Peak(None, "no peak figure for dtype 'int8'")
    assert device_peak("cpu", "auto").flops_per_s is None


def test_table_keeps_the_datasheets_ratios():
    # tensor cores: 16-bit at twice TF32 (up to the datasheets' rounding); fp32 far below both
    for figures, _ in hardware.GPU_PEAKS_TFLOPS.values():
        assert figures["bf16"] == figures["fp16"] == pytest.approx(2 * figures["tf32"], rel=0.002)
        assert figures["fp32"] < figures["tf32"] / 5


@pytest.mark.parametrize(("given", "kind"), [
    ("float32", "fp32"), (torch.float32, "fp32"), ("torch.bfloat16", "bf16"), ("BF16", "bf16"),
    ("float16", "fp16"), ("tf32", "tf32"), ("int4", None),
])
def test_normalize_dtype(given, kind):
    assert normalize_dtype(given) == kind


def test_cuda_device_is_looked_up_by_name(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda index=None: "NVIDIA H100 80GB HBM3")
    assert device_peak("cuda:0", "bfloat16").flops_per_s == pytest.approx(989.5e12)
    # fp32 matmuls run on TF32 tensor cores once torch is allowed to use them
    monkeypatch.setattr(torch, "get_float32_matmul_precision", lambda: "high")
    assert device_peak("cuda:0", "float32").flops_per_s == pytest.approx(494.5e12)
    monkeypatch.setattr(torch, "get_float32_matmul_precision", lambda: "highest")
    assert device_peak("cuda:0", "float32").flops_per_s == pytest.approx(67e12)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA answer")
def test_cuda_without_a_gpu_is_unknown():
    assert device_peak("cuda", "bf16") == Peak(None, "CUDA is not available")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_real_gpu_peak_is_the_table_entry_or_unknown():
    name = torch.cuda.get_device_name()
    peak = device_peak("cuda", "bfloat16")
    if gpu_variant(name) is None:
        assert peak.flops_per_s is None
    else:
        assert peak == gpu_peak(name, "bfloat16")
        # a large bf16 matmul reaches a sizeable share of the datasheet peak, never more
        a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
        for _ in range(3):
            a @ a
        torch.cuda.synchronize()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(20):
            a @ a
        end.record()
        torch.cuda.synchronize()
        achieved = 20 * 2 * 8192**3 / (start.elapsed_time(end) / 1000)
        assert 0.3 < achieved / peak.flops_per_s < 1.0, achieved / peak.flops_per_s


def test_unknown_device_kind():
    assert device_peak("mps", "fp32").flops_per_s is None


# ----------------------------------------------------------------------------- CPU benchmark


def test_matmul_benchmark_measures_a_positive_rate():
    flops = measure_matmul_flops("float32", seconds=0.05, size=128)
    assert math.isfinite(flops) and flops > 1e7


def test_cpu_peak_is_measured_once_and_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    calls = []

    def fake_benchmark(kind, *, seconds):
        calls.append(kind)
        return 1.5e11

    monkeypatch.setattr(hardware, "measure_matmul_flops", fake_benchmark)
    first = device_peak("cpu", "float32")
    assert first.flops_per_s == 1.5e11 and first.source.startswith("measured")
    path = tmp_path / "pytest-distillbench" / CACHE_FILE
    stored = json.loads(path.read_text())
    key = cpu_cache_key("fp32")
    assert stored[key]["flops_per_s"] == 1.5e11
    assert torch.__version__ in key and hardware.cpu_name() in key and key.endswith("fp32")

    second = device_peak("cpu", torch.float32)
    assert second.flops_per_s == 1.5e11 and "cached" in second.source
    assert calls == ["fp32"]  # not measured again

    device_peak("cpu", "bf16")  # another dtype is another entry
    assert calls == ["fp32", "bf16"]
    assert set(json.loads(path.read_text())) == {key, cpu_cache_key("bf16")}
    assert sorted(p.name for p in path.parent.iterdir()) == [CACHE_FILE, CACHE_FILE + ".lock"]


def test_damaged_cache_is_measured_again_and_rewritten(tmp_path, monkeypatch):
    monkeypatch.setattr(hardware, "measure_matmul_flops", lambda kind, *, seconds: 2e10)
    path = tmp_path / CACHE_FILE
    path.write_text("{not json")
    assert cpu_peak("fp32", cache_dir=tmp_path).flops_per_s == 2e10
    assert json.loads(path.read_text())[cpu_cache_key("fp32")]["flops_per_s"] == 2e10


def test_cpu_tf32_is_fp32(tmp_path, monkeypatch):
    monkeypatch.setattr(hardware, "measure_matmul_flops", lambda kind, *, seconds: {"fp32": 3e10}[kind])
    assert cpu_peak("tf32", cache_dir=tmp_path).flops_per_s == 3e10


def test_real_cpu_peak_round_trip(tmp_path):
    peak = cpu_peak("float32", cache_dir=tmp_path, seconds=0.05)
    assert peak.flops_per_s is not None and peak.flops_per_s > 1e7
    assert cpu_peak("float32", cache_dir=tmp_path).flops_per_s == peak.flops_per_s
