"""Precision by capability: what `auto` resolves to on each kind of hardware, the one warning for a
bf16 that is not native, and the CPU probe (the hardware is faked, the probe is real); which of
Ray's notices the platform drops, and that every other warning still shows."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch

from vavl import runtime
from vavl.runtime import DROPPED_NOTICES, autocast, cpu_flags, drop_notices, resolve_precision

CPU, CUDA = torch.device("cpu"), torch.device("cuda")
# /proc/cpuinfo-style flag sets: an AVX-512 CPU without bf16 (Zen 3, Skylake-SP), one with
# AVX512-BF16 (Zen 4, Cooper Lake), one with AMX (Sapphire Rapids), and a plain AVX2 one.
AVX512 = frozenset({"avx2", "avx512f", "avx512bw", "avx512_vnni"})
AVX512_BF16 = AVX512 | {"avx512_bf16"}
AMX = AVX512_BF16 | {"amx_tile", "amx_bf16"}
AVX2 = frozenset({"avx", "avx2", "fma"})


@pytest.fixture
def hardware(monkeypatch: pytest.MonkeyPatch):
    """Set this CPU's flags and the GPU's compute capability; forget earlier warnings."""
    monkeypatch.setattr(runtime, "_WARNED", set())

    def fake(*, flags: frozenset[str] = AVX2, capability: tuple[int, int] = (7, 0)) -> None:
        monkeypatch.setattr(runtime, "cpu_flags", lambda: flags)
        monkeypatch.setattr(runtime, "cuda_capability", lambda device: capability)

    return fake


@pytest.mark.parametrize(
    ("flags", "want"), [(AVX2, "fp32"), (AVX512, "fp32"), (AVX512_BF16, "bf16"), (AMX, "bf16")]
)
def test_auto_on_a_cpu_is_bf16_only_with_native_bf16(hardware, flags, want: str) -> None:
    hardware(flags=flags)
    assert resolve_precision("auto", CPU) == want


@pytest.mark.parametrize(
    ("capability", "want"), [((7, 0), "fp16"), ((7, 5), "fp16"), ((8, 0), "bf16"), ((9, 0), "bf16")]
)
def test_auto_on_a_gpu_is_bf16_from_ampere_and_fp16_before(hardware, capability, want) -> None:
    hardware(capability=capability)
    assert resolve_precision("auto", CUDA) == want


def test_explicit_choices_are_kept_and_fp16_on_a_cpu_is_refused(hardware) -> None:
    hardware(flags=AMX, capability=(7, 0))
    assert resolve_precision("fp32", CPU) == resolve_precision("fp32", CUDA) == "fp32"
    assert resolve_precision("fp16", CUDA) == "fp16"
    assert resolve_precision("bf16", CPU) == "bf16"
    with pytest.raises(ValueError, match="fp16 needs a GPU"):
        resolve_precision("fp16", CPU)
    with pytest.raises(ValueError, match="auto, fp32, bf16 or fp16, got 'fp8'"):
        resolve_precision("fp8", CPU)


def test_bf16_on_a_cpu_without_it_warns_once_naming_the_missing_flags(hardware, caplog) -> None:
    hardware(flags=AVX512)
    with caplog.at_level(logging.WARNING, logger="vavl.runtime"):
        assert resolve_precision("bf16", CPU) == "bf16"
        assert resolve_precision("bf16", CPU) == "bf16"
        with autocast(CPU, "bf16"):
            pass
    assert len(caplog.records) == 1
    message = caplog.records[0].getMessage()
    for words in ("without native bf16", "amx_bf16", "avx512_bf16", "many times slower"):
        assert words in message


def test_bf16_where_it_is_native_does_not_warn(hardware, caplog) -> None:
    hardware(flags=AVX512_BF16, capability=(8, 0))
    with caplog.at_level(logging.WARNING, logger="vavl.runtime"):
        resolve_precision("bf16", CPU)
        resolve_precision("bf16", CUDA)
    assert not caplog.records


def test_autocast_resolves_auto_like_the_trainer(hardware) -> None:
    hardware(flags=AVX2)
    with autocast(CPU, "auto"):
        assert not torch.is_autocast_enabled("cpu")
    hardware(flags=AVX512_BF16)
    with autocast(CPU, "auto"):
        assert torch.is_autocast_enabled("cpu")
        assert torch.get_autocast_dtype("cpu") == torch.bfloat16


@pytest.mark.skipif(not Path("/proc/cpuinfo").is_file(), reason="needs Linux's /proc/cpuinfo")
def test_the_cpuinfo_fallback_agrees_with_torchs_probe(monkeypatch) -> None:
    cpu_flags.cache_clear()
    try:
        from_torch = cpu_flags()
        monkeypatch.delattr(torch.cpu, "get_capabilities", raising=False)
        cpu_flags.cache_clear()
        from_cpuinfo = cpu_flags()
    finally:
        cpu_flags.cache_clear()
    assert from_cpuinfo, "no flags line in /proc/cpuinfo"
    bf16 = set(runtime.NATIVE_BF16_CPU_FLAGS)
    if from_torch:
        assert from_torch & bf16 == from_cpuinfo & bf16


@pytest.mark.parametrize("name", sorted(DROPPED_NOTICES))
def test_dropped_notices_are_dropped_and_other_warnings_kept(
    name: str, caplog: pytest.LogCaptureFixture
) -> None:
    drop_notices()
    drop_notices()  # idempotent: one filter per logger
    logger = logging.getLogger(name)
    assert len(logger.filters) == len({type(f) for f in logger.filters})
    with caplog.at_level(logging.WARNING, logger=name):
        for prefix in DROPPED_NOTICES[name]:
            logger.warning(prefix + ". Some advice.")
        logger.warning("disk is full: free some space")
    assert [record.getMessage() for record in caplog.records] == ["disk is full: free some space"]


@pytest.mark.parametrize(("cores", "local_workers", "expected"), [(2, 1, 2), (2, 2, 1), (16, 3, 5)])
def test_worker_threads_share_the_nodes_cores_among_its_workers(
    monkeypatch: pytest.MonkeyPatch, cores: int, local_workers: int, expected: int
) -> None:
    import ray.train

    from vavl.train.worker import worker_threads

    class Context:
        def get_local_world_size(self) -> int:
            return local_workers

    monkeypatch.setattr(ray.train, "get_context", Context)
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: set(range(cores)))
    assert worker_threads(None) == expected
    assert worker_threads(3) == 3  # train.threads_per_worker wins
