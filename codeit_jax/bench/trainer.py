"""Trainer benchmark: this JAX train step vs a transformers PyTorch T5 train step with AdamW.

Workload (one CodeIt training step at codet5-small size): random codet5-small weights (60M
parameters, vocabulary 32,100), batch 8, inputs of 512 tokens, labels of 128 tokens (every
position real, so no padding flatters either side), dropout on (train mode; `--no-dropout`
turns it off on both sides), AdamW lr 5e-5.

Ours: `codeit_jax.policy.trainer.Trainer` over every local device, the model's default compute dtype
(float32 on CPU, bfloat16 on GPU/TPU), gradient clipping and AdamW inside the jitted step. The
first step (compile) is timed separately; examples/s is over the following `--steps` steps
(default 2 on the CPU, 20 on an accelerator).

Reference: `transformers.T5ForConditionalGeneration` built from the same config (random init),
`model.train()`, `torch.optim.AdamW(lr=5e-5, weight_decay=0.01)`, loss from `labels=`, gradient
clipping to 1.0; warm-up steps (1 on the CPU, 3 on a GPU), then `--reference-steps` timed steps
(default 1 on the CPU, 10 on a GPU). It runs on `--reference-device` (default: `cuda` when torch
sees a GPU, else the CPU) in our compute dtype (`--reference-dtype auto`): on a GPU float32
master weights and AdamW with the forward pass and loss under `torch.autocast(bfloat16)`, as
ours computes in bfloat16 with float32 parameters; float32 on the CPU (see
`codeit_jax.bench.reference`).

Peak fraction: model FLOPs per second over the FLOP rate of a large jitted matmul in our compute
dtype (`measure_matmul_peak`: float32 2048^3 on the CPU, bfloat16 8192^3 on a GPU), measured in
the same run (best of the measurements before and after the timings, so a busy moment does not
lower the peak). Model FLOPs = `codeit_jax.policy.flops.train_step_flops`: 3x the
forward pass's matmuls, i.e. 6 x (matmul parameters) x tokens -- encoder weights x input tokens,
decoder weights and the tied LM head x label tokens, cross-attention K/V x input tokens -- plus
attention scores and mixing; norms, softmax and the optimizer update count nothing. The naive
6 x all parameters x (input + label tokens) figure is printed alongside.

Run: `python -m codeit_jax.bench.trainer [--config codet5_small --batch 8 --input-length 512
--label-length 128 --steps 2 --reference-steps 1 --no-reference --reference-device cpu
--reference-dtype float32]`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import jax
import numpy as np

from codeit_jax.bench import reference
from codeit_jax.policy.batching import EOS_ID, Batch, pad_batch
from codeit_jax.policy.flops import measure_matmul_peak, peak_matmul_size, train_step_flops
from codeit_jax.policy.t5 import T5, T5Config, count_params, named_config
from codeit_jax.policy.trainer import TrainConfig, Trainer


def random_batch(batch: int, input_length: int, label_length: int, vocab: int) -> Batch:
    """Full-length random examples; labels end with eos."""
    rng = np.random.default_rng(0)
    inputs = [rng.integers(2, vocab, input_length) for _ in range(batch)]
    labels = [np.append(rng.integers(2, vocab, label_length - 1), EOS_ID) for _ in range(batch)]
    return pad_batch(inputs, labels, batch, input_length, label_length)


def time_ours(trainer: Trainer, batch: Batch, steps: int) -> tuple[float, float, float, int]:
    """(compile + first step seconds, seconds per step, last loss, parameter count)."""
    state = trainer.init_state()
    jax.block_until_ready(state)
    start = time.perf_counter()
    state, metrics = trainer.step(state, batch)
    jax.block_until_ready((state, metrics))
    first = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(steps):
        state, metrics = trainer.step(state, batch)
    jax.block_until_ready((state, metrics))  # steps are dispatched asynchronously
    per_step = (time.perf_counter() - start) / steps
    loss = float(metrics["loss"])
    return first, per_step, loss, count_params(state.params)


def time_reference(
    config: T5Config,
    batch: Batch,
    steps: int,
    dropout: bool,
    device: str = "cpu",
    dtype: str = "float32",
    warmup: int = 1,
) -> tuple[float, float]:
    """(seconds per step, last loss) of a transformers T5 train step with torch AdamW.

    Parameters and optimizer state stay float32; with ``dtype="bfloat16"`` the forward pass and
    the loss run under ``torch.autocast`` (the backward pass follows the forward's dtypes).
    """
    import torch
    import transformers

    from codeit_jax.policy.convert import config_to_hf

    torch.manual_seed(0)
    hf_config = transformers.T5Config(**config_to_hf(config))
    model = transformers.T5ForConditionalGeneration(hf_config).to(device).train(dropout)
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-5, weight_decay=0.01)

    def tensor(x: np.ndarray) -> torch.Tensor:
        return torch.tensor(x, dtype=torch.long, device=device)

    input_ids, attention_mask = tensor(batch.input_ids), tensor(batch.attention_mask)
    labels = tensor(np.where(batch.label_weights > 0, batch.labels, -100))
    autocast = dtype != "float32"
    device_type = torch.device(device).type

    def step() -> torch.Tensor:
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device_type, dtype=getattr(torch, dtype), enabled=autocast):
            out = model(input_ids=input_ids, attention_mask=attention_mask, labels=labels)
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        return out.loss.detach()

    for _ in range(warmup):  # allocations, optimizer state, kernel selection
        step()
    reference.synchronize(device)
    start = time.perf_counter()
    for _ in range(steps):
        loss = step()
    reference.synchronize(device)
    seconds = (time.perf_counter() - start) / steps
    return seconds, float(loss.item())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="codet5_small")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--input-length", type=int, default=512)
    parser.add_argument("--label-length", type=int, default=128)
    parser.add_argument("--steps", type=int, default=None, help="2 on the CPU, else 20")
    parser.add_argument(
        "--reference-steps", type=int, default=None, help="1 on a CPU reference, else 10"
    )
    parser.add_argument("--no-reference", action="store_true")
    reference.add_arguments(parser)
    parser.add_argument(
        "--no-dropout", action="store_true", help="both sides without dropout (eval mode)"
    )
    args = parser.parse_args()
    if not args.no_reference:
        reference.limit_jax_memory()

    config = named_config(args.config)
    device = jax.devices()[0]
    if args.steps is None:
        args.steps = 2 if jax.default_backend() == "cpu" else 20
    peak_dtype, peak_size = config.compute_dtype, peak_matmul_size()
    load_before = os.getloadavg()[0]
    print(
        f"backend {jax.default_backend()} ({device.device_kind}), {jax.device_count()} devices, "
        f"{os.cpu_count()} CPUs, load average {load_before:.1f}, {platform.processor()}"
    )
    batch = random_batch(args.batch, args.input_length, args.label_length, config.vocab_size)
    trainer = Trainer(T5(config), TrainConfig(batch_size=args.batch, dropout=not args.no_dropout))

    peak_before = measure_matmul_peak(peak_size, dtype=peak_dtype)
    first_s, step_s, loss, n_params = time_ours(trainer, batch, args.steps)
    peak = max(peak_before, measure_matmul_peak(peak_size, dtype=peak_dtype))
    flops = train_step_flops(config, args.batch, args.input_length, args.label_length)
    naive = 6 * n_params * args.batch * (args.input_length + args.label_length)
    examples_per_s = args.batch / step_s
    fraction = flops / step_s / peak
    print(
        f"{args.config}: {n_params / 1e6:.1f}M parameters, compute {config.compute_dtype}; "
        f"batch {args.batch}, {args.input_length} input / {args.label_length} label tokens"
    )
    print(
        f"matmul peak ({peak_dtype} {peak_size}^3, best of before/after): {peak / 1e9:.1f} GFLOP/s"
    )
    print(
        f"model FLOPs per step {flops / 1e12:.3f} TFLOP (3 x forward matmuls incl. attention); "
        f"naive 6 x params x tokens = {naive / 1e12:.3f} TFLOP"
    )
    print(
        f"ours: {step_s:.3f} s/step (mean of {args.steps}), {examples_per_s:.3f} examples/s, "
        f"{flops / step_s / 1e9:.1f} GFLOP/s = {fraction:.1%} of peak; first step (compile) "
        f"{first_s:.1f} s; loss {loss:.3f}"
    )
    figures = {
        "config": args.config,
        "backend": jax.default_backend(),
        "device": device.device_kind,
        "batch": args.batch,
        "input_length": args.input_length,
        "label_length": args.label_length,
        "compute_dtype": str(config.compute_dtype),
        "dropout": not args.no_dropout,
        "step_s": round(step_s, 4),
        "first_step_s": round(first_s, 2),
        "examples_per_s": round(examples_per_s, 4),
        "model_tflops_per_step": round(flops / 1e12, 4),
        "peak_gflops_per_s": round(peak / 1e9, 2),
        "peak_dtype": str(peak_dtype),
        "peak_size": peak_size,
        "peak_fraction": round(fraction, 4),
    }
    if not args.no_reference:
        ref_device, ref_dtype = reference.resolve(
            args.reference_device, args.reference_dtype, config.compute_dtype
        )
        on_cpu = ref_device == "cpu"
        if args.reference_steps is None:
            args.reference_steps = 1 if on_cpu else 10
        ref_s, ref_loss = time_reference(
            config, batch, args.reference_steps, not args.no_dropout, ref_device, ref_dtype,
            warmup=1 if on_cpu else 3,
        )  # fmt: skip
        ref_examples_per_s = args.batch / ref_s
        precision = "float32" if ref_dtype == "float32" else f"autocast {ref_dtype}"
        print(
            f"reference (transformers {_version('transformers')}, torch {_version('torch')}, "
            f"{reference.device_name(ref_device)}, {precision}): "
            f"{ref_s:.3f} s/step (mean of {args.reference_steps}), "
            f"{ref_examples_per_s:.3f} examples/s = {flops / ref_s / peak:.1%} of peak; "
            f"loss {ref_loss:.3f}"
        )
        print(f"speedup (ours / reference examples/s): {examples_per_s / ref_examples_per_s:.2f}x")
        figures.update(
            reference_device=ref_device,
            reference_device_name=reference.device_name(ref_device),
            reference_dtype=ref_dtype,
            reference_autocast=ref_dtype != "float32",  # float32 weights and AdamW either way
            reference_step_s=round(ref_s, 4),
            reference_examples_per_s=round(ref_examples_per_s, 4),
            reference_peak_fraction=round(flops / ref_s / peak, 4),
            speedup=round(examples_per_s / ref_examples_per_s, 3),
        )
    figures["load_average"] = [round(load_before, 1), round(os.getloadavg()[0], 1)]
    print(json.dumps(figures))


def _version(package: str) -> str:
    from importlib.metadata import version

    return version(package)


if __name__ == "__main__":
    main()
