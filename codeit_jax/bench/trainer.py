"""Trainer benchmark: this JAX train step vs a transformers PyTorch T5 train step with AdamW.

Workload (one CodeIt training step at codet5-small size): random codet5-small weights (60M
parameters, vocabulary 32,100), batch 8, inputs of 512 tokens, labels of 128 tokens (every
position real, so no padding flatters either side), dropout on (train mode; `--no-dropout`
turns it off on both sides), AdamW lr 5e-5.

Ours: `codeit_jax.policy.trainer.Trainer` over every local device, the model's default compute
dtype (float32 on CPU, bfloat16 on GPU/TPU), gradient clipping and AdamW inside the jitted step.
The first step (compile) is timed separately; then each of `--repeats` timings (default 3 on
the CPU, 5 on an accelerator) covers `--steps` steps dispatched back to back (default 1 on the
CPU, 10 on an accelerator, so dispatch hides behind the queue).

Reference: `transformers.T5ForConditionalGeneration` built from the same config (random init),
`model.train()`, `torch.optim.AdamW(lr=5e-5, weight_decay=0.01)`, loss from `labels=`, gradient
clipping to 1.0; warm-up steps (1 on the CPU, 3 on a GPU), then `--repeats` timings of
`--reference-steps` steps each (default 1 on the CPU, 10 on a GPU). It runs on
`--reference-device` (default: `cuda` when torch sees a GPU, else the CPU) in our compute dtype
(`--reference-dtype auto`): on a GPU float32 master weights and AdamW with the forward pass and
loss under `torch.autocast(bfloat16)`, as ours computes in bfloat16 with float32 parameters;
float32 on the CPU (see `codeit_jax.bench.reference`).

Trust (`codeit_jax.bench.timing`): each side is reported as the median of its timings with
their spread, (max - min) / median; `speedup` and `peak_fraction` come from the medians. A side
(ours, the reference) that spreads more than 15% makes the JSON say `"noisy": true` and names it
in `noisy_sides`; the matmul peak's own spread is `peak_spread` and does not count. The 1-minute
load average before and after is in the text and JSON.

Peak fraction: model FLOPs per second over the FLOP rate of a large jitted matmul in our compute
dtype (float32 2048^3 on the CPU, bfloat16 8192^3 on a GPU), measured in the same run (the best
of the measurements before and after each side's timings, so a busy moment does not lower the
peak; on the CPU with both XLA's default matmul kernels and the sampler's,
`codeit_jax.policy.flops.peak_kernel_options`). Model FLOPs =
`codeit_jax.policy.flops.train_step_flops`: 3x the forward pass's matmuls, i.e. 6 x (matmul
parameters) x tokens -- encoder weights x input tokens, decoder weights and
the tied LM head x label tokens, cross-attention K/V x input tokens -- plus attention scores and
mixing; norms, softmax and the optimizer update count nothing. The naive 6 x all parameters x
(input + label tokens) figure is printed alongside.

The paper's shape (`--paper-shape`): the rows one jitted step of the paper config
(configs/codeit.py) puts through the model on each device -- its micro-batch,
`train.batch_size / train.grad_accum_steps`, per local device -- at its longest input,
2 x `encoding.input_state_max` tokens (explicit `--batch` / `--input-length` win). A paper
optimizer step accumulates `grad_accum_steps` such micro-batches, so examples/s carries over and
the JSON adds the time of one paper optimizer step estimated from it. The paper's model is
codet5p_220m; on a CPU its 8 rows at 1,024 input tokens need more host memory than a small
machine has (docs/benchmarks.md, `bench.input_length`), so time codet5-small at the paper's
shape there, or codet5p_220m with `--batch 2`:

    python -m codeit_jax.bench.trainer --paper-shape --no-reference            # codet5-small
    python -m codeit_jax.bench.trainer --config codet5p_220m --paper-shape --no-reference
        # on an accelerator; on a CPU add --batch 2

Run: `python -m codeit_jax.bench.trainer [--config codet5_small --batch 8 --input-length 512
--label-length 128 --repeats 3 --steps 1 --reference-steps 1 --no-reference --paper-shape
--reference-device cpu --reference-dtype float32]`. The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import os
import platform
import runpy
import time
from pathlib import Path
from typing import Any

import jax
import numpy as np

from codeit_jax.bench import reference
from codeit_jax.bench.timing import MatmulPeak, Timings, finish, load_average, repeat
from codeit_jax.host_process import prepare_process
from codeit_jax.policy.batching import EOS_ID, Batch, pad_batch
from codeit_jax.policy.flops import train_step_flops
from codeit_jax.policy.t5 import T5, T5Config, count_params, named_config
from codeit_jax.policy.trainer import TrainConfig, Trainer

#: The paper config, whose shape `--paper-shape` times.
PAPER_CONFIG = Path(__file__).resolve().parents[2] / "configs" / "codeit.py"


def random_batch(batch: int, input_length: int, label_length: int, vocab: int) -> Batch:
    """Full-length random examples; labels end with eos."""
    rng = np.random.default_rng(0)
    inputs = [rng.integers(2, vocab, input_length) for _ in range(batch)]
    labels = [np.append(rng.integers(2, vocab, label_length - 1), EOS_ID) for _ in range(batch)]
    return pad_batch(inputs, labels, batch, input_length, label_length)


def paper_shape(path: Path = PAPER_CONFIG) -> dict[str, Any]:
    """The paper config's micro-batch (rows through the model at once), gradient accumulation,
    effective batch, longest model input and model name."""
    config = runpy.run_path(str(path))["get_config"]()
    train = config.train
    return {
        "micro_batch": train.batch_size // train.grad_accum_steps,
        "grad_accum_steps": train.grad_accum_steps,
        "batch_size": train.batch_size,
        "input_length": 2 * config.encoding.input_state_max,
        "model": config.model.name,
    }


def time_steps(
    trainer: Trainer, batch: Batch, steps: int, repeats: int
) -> tuple[float, Timings, float, int]:
    """(compile + first step seconds, seconds per step of each of ``repeats`` timings of
    ``steps`` back-to-back steps, last loss, parameter count)."""
    state = trainer.init_state()
    jax.block_until_ready(state)
    start = time.perf_counter()
    state, metrics = trainer.step(state, batch)
    jax.block_until_ready((state, metrics))
    first = time.perf_counter() - start

    def run() -> None:
        nonlocal state, metrics
        for _ in range(steps):
            state, metrics = trainer.step(state, batch)
        jax.block_until_ready((state, metrics))  # steps are dispatched asynchronously

    timings = repeat(run, repeats, units=steps)
    return first, timings, float(metrics["loss"]), count_params(state.params)


def time_ours(trainer: Trainer, batch: Batch, steps: int) -> tuple[float, float, float, int]:
    """(compile + first step seconds, seconds per step over one timing of ``steps`` steps, last
    loss, parameter count): `time_steps` with a single timing."""
    first, timings, loss, n_params = time_steps(trainer, batch, steps, 1)
    return first, timings.median, loss, n_params


def time_reference(
    config: T5Config,
    batch: Batch,
    steps: int,
    dropout: bool,
    device: str = "cpu",
    dtype: str = "float32",
    warmup: int = 1,
    repeats: int = 1,
) -> tuple[Timings, float]:
    """(seconds per step of each of ``repeats`` timings of ``steps`` steps, last loss) of a
    transformers T5 train step with torch AdamW.

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
    losses: list[torch.Tensor] = []

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device_type, dtype=getattr(torch, dtype), enabled=autocast):
            out = model(input_ids=input_ids, attention_mask=attention_mask, labels=labels)
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        losses.append(out.loss.detach())

    def run() -> None:
        for _ in range(steps):
            step()
        reference.synchronize(device)

    for _ in range(warmup):  # allocations, optimizer state, kernel selection
        step()
    reference.synchronize(device)
    timings = repeat(run, repeats, units=steps)
    return timings, float(losses[-1].item())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="codet5_small")
    parser.add_argument("--batch", type=int, default=None, help="rows per step (default 8)")
    parser.add_argument(
        "--input-length", type=int, default=None, help="input tokens (default 512; paper 1024)"
    )
    parser.add_argument("--label-length", type=int, default=128)
    parser.add_argument(
        "--paper-shape",
        action="store_true",
        help="the paper config's micro-batch per device at its longest input (docstring)",
    )
    parser.add_argument(
        "--repeats", type=int, default=None, help="timings per side: 3 on the CPU, else 5"
    )
    parser.add_argument(
        "--steps", type=int, default=None, help="our steps per timing: 1 on the CPU, else 10"
    )
    parser.add_argument(
        "--reference-steps",
        type=int,
        default=None,
        help="reference steps per timing: 1 on a CPU reference, else 10",
    )
    parser.add_argument("--no-reference", action="store_true")
    reference.add_arguments(parser)
    parser.add_argument(
        "--no-dropout", action="store_true", help="both sides without dropout (eval mode)"
    )
    args = parser.parse_args()
    if not args.no_reference:
        reference.limit_jax_memory()

    load_before = load_average()
    config = named_config(args.config)
    device = jax.devices()[0]
    on_accelerator = jax.default_backend() != "cpu"
    if args.repeats is None:
        args.repeats = 5 if on_accelerator else 3
    if args.steps is None:
        args.steps = 10 if on_accelerator else 1
    paper = paper_shape() if args.paper_shape else None
    if args.batch is None:
        args.batch = paper["micro_batch"] * jax.local_device_count() if paper else 8
    if args.input_length is None:
        args.input_length = paper["input_length"] if paper else 512
    print(
        f"backend {jax.default_backend()} ({device.device_kind}), {jax.device_count()} devices, "
        f"{os.cpu_count()} CPUs, load average {load_before} before, {platform.processor()}"
    )
    batch = random_batch(args.batch, args.input_length, args.label_length, config.vocab_size)
    trainer = Trainer(T5(config), TrainConfig(batch_size=args.batch, dropout=not args.no_dropout))

    peak = MatmulPeak(dtype=config.compute_dtype)
    peak.measure()
    first_s, ours, loss, n_params = time_steps(trainer, batch, args.steps, args.repeats)
    peak.measure()
    flops = train_step_flops(config, args.batch, args.input_length, args.label_length)
    naive = 6 * n_params * args.batch * (args.input_length + args.label_length)
    examples_per_s = args.batch / ours.median
    spreads = {"ours": ours.spread}
    print(
        f"{args.config}: {n_params / 1e6:.1f}M parameters, compute {config.compute_dtype}; "
        f"batch {args.batch}, {args.input_length} input / {args.label_length} label tokens"
        + (
            f" (paper config: micro-batch of {paper['micro_batch']} rows per device, "
            f"{paper['input_length']} input tokens)"
            if paper
            else ""
        )
    )
    print(
        f"model FLOPs per step {flops / 1e12:.3f} TFLOP (3 x forward matmuls incl. attention); "
        f"naive 6 x params x tokens = {naive / 1e12:.3f} TFLOP"
    )
    print(
        f"ours: {ours.describe('/step')} over {args.steps} step(s) per timing, "
        f"{examples_per_s:.3f} examples/s, {flops / ours.median / 1e9:.1f} GFLOP/s; "
        f"first step (compile) {first_s:.1f} s; loss {loss:.3f}"
    )
    figures: dict[str, Any] = {
        "config": args.config,
        "backend": jax.default_backend(),
        "device": device.device_kind,
        "batch": args.batch,
        "input_length": args.input_length,
        "label_length": args.label_length,
        "compute_dtype": str(config.compute_dtype),
        "dropout": not args.no_dropout,
        "repeats": args.repeats,
        "steps_per_timing": args.steps,
        "step_s": round(ours.median, 4),
        "ours": ours.summary(),
        "first_step_s": round(first_s, 2),
        "examples_per_s": round(examples_per_s, 4),
        "model_tflops_per_step": round(flops / 1e12, 4),
        "peak_dtype": str(config.compute_dtype),
    }
    if paper:
        optimizer_step_s = paper["batch_size"] / examples_per_s
        print(
            f"paper shape: one optimizer step of {paper['batch_size']} examples "
            f"({paper['grad_accum_steps']} micro-batches of {paper['micro_batch']}) would take "
            f"about {optimizer_step_s:.1f} s with {args.config} here (the paper's model is "
            f"{paper['model']})"
        )
        figures.update(
            paper_shape=True,
            paper_micro_batch=paper["micro_batch"],
            paper_grad_accum_steps=paper["grad_accum_steps"],
            paper_batch_size=paper["batch_size"],
            paper_model=paper["model"],
            paper_optimizer_step_s_estimate=round(optimizer_step_s, 2),
        )
    if not args.no_reference:
        ref_device, ref_dtype = reference.resolve(
            args.reference_device, args.reference_dtype, config.compute_dtype
        )
        on_cpu = ref_device == "cpu"
        if args.reference_steps is None:
            args.reference_steps = 1 if on_cpu else 10
        ref, ref_loss = time_reference(
            config, batch, args.reference_steps, not args.no_dropout, ref_device, ref_dtype,
            warmup=1 if on_cpu else 3, repeats=args.repeats,
        )  # fmt: skip
        peak.measure()
        spreads["reference"] = ref.spread
        ref_examples_per_s = args.batch / ref.median
        precision = "float32" if ref_dtype == "float32" else f"autocast {ref_dtype}"
        print(
            f"reference (transformers {_version('transformers')}, torch {_version('torch')}, "
            f"{reference.device_name(ref_device)}, {precision}): {ref.describe('/step')} over "
            f"{args.reference_steps} step(s) per timing, {ref_examples_per_s:.3f} examples/s; "
            f"loss {ref_loss:.3f}"
        )
        print(f"speedup (ours / reference examples/s, medians): {ref.median / ours.median:.2f}x")
        figures.update(
            reference_device=ref_device,
            reference_device_name=reference.device_name(ref_device),
            reference_dtype=ref_dtype,
            reference_autocast=ref_dtype != "float32",  # float32 weights and AdamW either way
            reference_steps_per_timing=args.reference_steps,
            reference_step_s=round(ref.median, 4),
            reference=ref.summary(),
            reference_examples_per_s=round(ref_examples_per_s, 4),
            reference_peak_fraction=round(flops / ref.median / peak.best, 4),
            speedup=round(examples_per_s / ref_examples_per_s, 3),
        )
    fraction = flops / ours.median / peak.best
    figures.update(peak.summary(), peak_fraction=round(fraction, 4))
    print(f"matmul peak ({config.compute_dtype}): {peak.describe()}")
    print(
        f"ours: {fraction:.1%} of peak"
        + (f"; reference {figures['reference_peak_fraction']:.1%}" if not args.no_reference else "")
    )
    finish(figures, spreads, load_before)


def _version(package: str) -> str:
    from importlib.metadata import version

    return version(package)


if __name__ == "__main__":
    prepare_process()  # before JAX starts
    main()
