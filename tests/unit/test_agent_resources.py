"""What an agent declares about its machine: nvidia-smi's answers parsed, NVENC sessions, default slots."""

from __future__ import annotations

from reelforge.engine.agent import Resources, parse_nvidia_smi

BANNER = """Tue Dec  1 21:00:00 2026
+-----------------------------------------------------------------------------------------+
| NVIDIA-SMI 550.54.15              Driver Version: 550.54.15      CUDA Version: 12.4     |
|-----------------------------------------+------------------------+----------------------+
"""


def test_a_data_centre_gpu_without_nvenc() -> None:
    got = parse_nvidia_smi("NVIDIA H200, 143771\n", BANNER, Resources(cpu_cores=16))
    assert (got.gpu_name, got.vram_gb, got.cuda, got.nvenc_sessions) == ("NVIDIA H200", 140.4, "12.4", 0)
    assert got.slots() == 16  # 35 by VRAM, no NVENC limit, capped by the CPU cores


def test_a_geforce_is_held_to_the_drivers_nvenc_limit() -> None:
    got = parse_nvidia_smi("NVIDIA GeForce RTX 4090, 24564\nNVIDIA GeForce RTX 4090, 24564\n", BANNER,
                           Resources(cpu_cores=32))
    assert got.gpu_name == "NVIDIA GeForce RTX 4090" and got.vram_gb == 24.0 and got.nvenc_sessions == 8
    assert got.slots() == 6  # 24 GB / 4 GB per job, under the 8 NVENC sessions


def test_no_gpu_answer_leaves_a_cpu_machine() -> None:
    got = parse_nvidia_smi("", "", Resources(cpu_cores=4))
    assert got.gpu_name is None and got.slots() == 1
    assert parse_nvidia_smi("No devices were found", "", Resources()).gpu_name is None
