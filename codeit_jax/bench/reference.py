"""Where and in what precision the benchmarks' transformers + torch reference runs.

The reference should do what our side does, on the same kind of hardware: on a GPU our model
computes in bfloat16 with float32 parameters (``default_compute_dtype``), so a float32 torch
model there -- or one left on the CPU -- would flatter us. By default the reference runs on
``cuda`` when torch sees a GPU (else on the CPU) in our compute dtype: the trainer reference
under ``torch.autocast(bfloat16)`` with float32 master weights, the sampler reference with the
model cast to bfloat16 (inference keeps no master weights).
"""

from __future__ import annotations

import argparse
import os

DTYPES = ("auto", "float32", "bfloat16")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--reference-device",
        default=None,
        help='torch device of the reference (default: "cuda" if torch sees a GPU, else "cpu")',
    )
    parser.add_argument(
        "--reference-dtype",
        default="auto",
        choices=DTYPES,
        help="compute dtype of the reference (auto: the same as ours)",
    )


def limit_jax_memory(fraction: str = "0.5") -> None:
    """Leave GPU memory to torch: JAX otherwise takes 75% of it when its backend starts.

    Only effective before JAX's first use of the device; an explicit setting wins.
    """
    os.environ.setdefault("XLA_PYTHON_CLIENT_MEM_FRACTION", fraction)


def resolve(device: str | None, dtype: str, compute_dtype) -> tuple[str, str]:
    """(torch device, dtype name) for the reference; ``compute_dtype`` is ours."""
    if device is None:
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    if dtype == "auto":
        dtype = "bfloat16" if str(compute_dtype) == "bfloat16" else "float32"
    return device, dtype


def synchronize(device: str) -> None:
    """Wait for the device's queued work (timings on CUDA are otherwise launch times)."""
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize(device)


def device_name(device: str) -> str:
    if device.startswith("cuda"):
        import torch

        return torch.cuda.get_device_name(device)
    return "CPU"
