"""Sampler benchmark: this JAX sampler vs transformers' PyTorch ``generate``, same weights.

Workload (CodeIt's sampling step at codet5-small size): random codet5-small weights (60M
parameters, vocabulary 32,100), 4 tasks x 24 samples, 512 input tokens each, up to 128 new
tokens, temperature 0.95 over the full vocabulary. With random weights EOS is rare, so nearly
every row runs the full 128 steps; tokens/s counts the tokens actually produced (EOS included,
padding after it not).

Reference: the same weights written with ``save_hf_checkpoint`` and loaded by
``T5ForConditionalGeneration``; ``generate(do_sample=True, temperature=0.95, top_k=0,
num_return_sequences=24)`` (as generate does, it repeats each input 24 times and runs the
encoder on all 96 copies). It runs on ``--reference-device`` (default: ``cuda`` when torch sees
a GPU, else the CPU) in our compute dtype (``--reference-dtype auto``: bfloat16 on a GPU, the
model cast to it; float32 on the CPU), see ``codeit_jax.bench.reference``. On a GPU it is timed
at the full length after a full-size warm-up call (``--reference-new-tokens full``). On the CPU
it is slow, so by default it is timed at two short lengths n1 < n2 of new tokens
(``--reference-new-tokens 2,10``) and its time for 128 tokens is extrapolated linearly:
t(128) = t(n1) + (128 - n1) * (t(n2) - t(n1)) / (n2 - n1). Its attention cost grows with the
length, so this extrapolation flatters the reference slightly; the speedup is, if anything,
understated.

Peak fraction: model FLOPs (``codeit_jax.policy.flops.sampling_flops``, useful work only) per second
over the FLOP rate of a large jitted matmul in our compute dtype measured in the same run
(``measure_matmul_peak``: float32 2048^3 on the CPU, bfloat16 8192^3 on a GPU; best of the
measurements before and after timing the sampler, so a busy moment does not lower the peak).
Compile time (ahead-of-time ``lower().compile()``) is reported separately and excluded from
tokens/s; a warm-up call precedes the timed ones.

``--program-vocab N`` also times sampling restricted to N random tokens (plus EOS), as CodeIt
restricts samples to its program vocabulary: the sampler then computes only those logits
(the reference is not run for it; it would still compute all 32,100).

Run: ``python -m codeit_jax.bench.sampler [--tasks 4 --samples 24 --input-length 512
--new-tokens 128 --reference-new-tokens 2,10 --repeats 2 --no-reference --reference-device cpu
--reference-dtype float32]`` (``--repeats`` defaults to 2 on the CPU, 5 on an accelerator).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time

import jax
import numpy as np

from codeit_jax.bench import reference
from codeit_jax.policy.convert import save_hf_checkpoint
from codeit_jax.policy.flops import measure_matmul_peak, peak_matmul_size, sampling_flops
from codeit_jax.policy.mesh import replicated_sharding
from codeit_jax.policy.sampler import Sampler
from codeit_jax.policy.t5 import count_params, init_params, named_config

TEMPERATURE = 0.95


def random_inputs(tasks: int, length: int, vocab: int, seed: int = 0) -> list[list[int]]:
    """Token lists of exactly ``length`` tokens ending with EOS, like tokenised task text."""
    rng = np.random.default_rng(seed)
    return [rng.integers(2, vocab, size=length - 1).tolist() + [1] for _ in range(tasks)]


def time_sampler(
    sampler: Sampler,
    params,
    inputs,
    samples: int,
    new_tokens: int,
    repeats: int,
    allowed_tokens: np.ndarray | None = None,
):
    """(compile seconds, best run seconds, tokens produced, decoder steps run)."""
    kwargs = dict(
        num_samples=samples,
        max_new_tokens=new_tokens,
        temperature=TEMPERATURE,
        allowed_tokens=allowed_tokens,
    )
    params = jax.device_put(params, replicated_sharding(sampler.mesh))
    start = time.perf_counter()
    sampler.lower(params, inputs, jax.random.key(0), **kwargs).compile()
    compile_s = time.perf_counter() - start
    out = sampler.sample(params, inputs, jax.random.key(0), **kwargs)  # warm-up
    best = float("inf")
    for repeat in range(repeats):
        start = time.perf_counter()
        out = sampler.sample(params, inputs, jax.random.key(1 + repeat), **kwargs)
        best = min(best, time.perf_counter() - start)
    return compile_s, best, int(out.lengths.sum()), int(out.lengths.max())


def time_reference(
    directory: str,
    inputs,
    samples: int,
    lengths: tuple[int, ...],
    device: str = "cpu",
    dtype: str = "float32",
) -> list:
    """[(seconds, tokens produced, longest row)] of transformers' ``generate`` for each number of
    new tokens, after a warm-up call (the first call pays one-time set-up costs): a small one on
    the CPU, the full-size longest one on a GPU (kernel selection, allocator growth)."""
    import torch
    import transformers

    model = transformers.T5ForConditionalGeneration.from_pretrained(directory).eval()
    model = model.to(device, getattr(torch, dtype))
    ids = torch.tensor(inputs, device=device)
    settings = dict(do_sample=True, temperature=TEMPERATURE, top_k=0, top_p=1.0)

    def generate(input_ids, new_tokens: int, num_return_sequences: int = 1):
        return model.generate(
            input_ids=input_ids,
            attention_mask=torch.ones_like(input_ids),
            num_return_sequences=num_return_sequences,
            max_new_tokens=new_tokens,
            **settings,
        )

    results = []
    with torch.no_grad():
        if device == "cpu":
            generate(ids[:1, :32], 2)
        else:
            generate(ids, max(lengths), samples)
        for new_tokens in lengths:
            torch.manual_seed(0)
            reference.synchronize(device)
            start = time.perf_counter()
            out = generate(ids, new_tokens, samples)
            reference.synchronize(device)
            seconds = time.perf_counter() - start
            generated = out[:, 1:].cpu().numpy()
            is_eos = generated == 1
            produced = np.where(is_eos.any(1), is_eos.argmax(1) + 1, (generated != 0).sum(1))
            results.append((seconds, int(produced.sum()), int(produced.max())))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="codet5_small")
    parser.add_argument("--tasks", type=int, default=4)
    parser.add_argument("--samples", type=int, default=24)
    parser.add_argument("--input-length", type=int, default=512)
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=None, help="2 on the CPU, else 5")
    parser.add_argument(
        "--reference-new-tokens",
        default=None,
        help='n1,n2 to extrapolate from, or "full" (default: 2,10 on the CPU, else full)',
    )
    parser.add_argument("--no-reference", action="store_true")
    reference.add_arguments(parser)
    parser.add_argument("--program-vocab", type=int, default=0, help="also time a masked run")
    args = parser.parse_args()
    if not args.no_reference:
        reference.limit_jax_memory()

    config = named_config(args.config)
    params = init_params(config, jax.random.key(0))
    inputs = random_inputs(args.tasks, args.input_length, config.vocab_size)
    device = jax.devices()[0]
    if args.repeats is None:
        args.repeats = 2 if jax.default_backend() == "cpu" else 5
    peak_dtype, peak_size = config.compute_dtype, peak_matmul_size()
    print(
        f"backend {jax.default_backend()} ({device.device_kind}), {jax.device_count()} devices, "
        f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}, {platform.processor()}"
    )
    print(
        f"{args.config}: {count_params(params) / 1e6:.1f}M parameters, compute "
        f"{config.compute_dtype}; {args.tasks} tasks x {args.samples} samples, "
        f"{args.input_length} input tokens, up to {args.new_tokens} new tokens"
    )

    peak_before = measure_matmul_peak(peak_size, dtype=peak_dtype)
    sampler = Sampler(config)
    compile_s, run_s, tokens, steps = time_sampler(
        sampler, params, inputs, args.samples, args.new_tokens, args.repeats
    )
    peak = max(peak_before, measure_matmul_peak(peak_size, dtype=peak_dtype))
    print(
        f"matmul peak ({peak_dtype} {peak_size}^3, best of 5 before and 5 after): "
        f"{peak / 1e9:.1f} GFLOP/s"
    )
    flops = sampling_flops(config, args.tasks, args.samples, args.input_length, steps)
    tokens_per_s = tokens / run_s
    achieved = flops / run_s
    print(
        f"sampler: {tokens} tokens ({steps} steps) in {run_s:.2f} s (best of {args.repeats}) = "
        f"{tokens_per_s:.1f} tokens/s; {flops / 1e9:.1f} GFLOP -> {achieved / 1e9:.1f} GFLOP/s "
        f"= {achieved / peak:.1%} of peak; compile {compile_s:.1f} s"
    )
    figures = {
        "config": args.config,
        "backend": jax.default_backend(),
        "device": device.device_kind,
        "compute_dtype": str(config.compute_dtype),
        "tasks": args.tasks,
        "samples": args.samples,
        "input_length": args.input_length,
        "new_tokens": args.new_tokens,
        "tokens": tokens,
        "run_s": round(run_s, 3),
        "compile_s": round(compile_s, 2),
        "tokens_per_s": round(tokens_per_s, 1),
        "model_gflops_per_s": round(achieved / 1e9, 2),
        "peak_gflops_per_s": round(peak / 1e9, 2),
        "peak_dtype": str(peak_dtype),
        "peak_size": peak_size,
        "peak_fraction": round(achieved / peak, 4),
    }

    if args.program_vocab:
        allowed = np.zeros(config.vocab_size, bool)
        rng = np.random.default_rng(1)
        allowed[rng.choice(np.arange(2, config.vocab_size), args.program_vocab, replace=False)] = 1
        _, masked_s, masked_tokens, masked_steps = time_sampler(
            sampler, params, inputs, args.samples, args.new_tokens, args.repeats, allowed
        )
        masked_flops = sampling_flops(
            config.replace(vocab_size=args.program_vocab + 1),
            args.tasks,
            args.samples,
            args.input_length,
            masked_steps,
        )
        print(
            f"sampler, {args.program_vocab}-token program vocabulary: {masked_tokens} tokens in "
            f"{masked_s:.2f} s = {masked_tokens / masked_s:.1f} tokens/s, "
            f"{masked_flops / masked_s / peak:.1%} of peak"
        )
        figures.update(
            program_vocab=args.program_vocab,
            masked_tokens_per_s=round(masked_tokens / masked_s, 1),
            masked_peak_fraction=round(masked_flops / masked_s / peak, 4),
        )

    if not args.no_reference:
        ref_device, ref_dtype = reference.resolve(
            args.reference_device, args.reference_dtype, config.compute_dtype
        )
        spec = args.reference_new_tokens or ("2,10" if ref_device == "cpu" else "full")
        extrapolate = spec != "full"
        lengths = tuple(int(n) for n in spec.split(",")) if extrapolate else (args.new_tokens,)
        with tempfile.TemporaryDirectory() as directory:
            save_hf_checkpoint(config.replace(dropout_rate=0.0), params, directory)
            timings = time_reference(
                directory, inputs, args.samples, lengths, ref_device, ref_dtype
            )
        where = f"{reference.device_name(ref_device)}, {ref_dtype}"
        if extrapolate:  # from two short lengths (see the docstring)
            n1, n2 = lengths
            (t1, _, _), (t2, tokens2, _) = timings
            per_step = (t2 - t1) / (n2 - n1)
            full_s = t1 + (args.new_tokens - n1) * per_step
            ref_tokens = args.tasks * args.samples * args.new_tokens
            ref_flops = flops
            print(
                f"transformers generate ({where}): {n1} new tokens {t1:.1f} s, {n2} new tokens "
                f"{t2:.1f} s ({tokens2 / t2:.1f} tokens/s measured) -> {args.new_tokens} tokens "
                f"extrapolated {full_s:.0f} s"
            )
            measured_tokens_per_s = tokens2 / t2
        else:
            ((full_s, ref_tokens, ref_steps),) = timings
            ref_flops = sampling_flops(
                config, args.tasks, args.samples, args.input_length, ref_steps
            )
            measured_tokens_per_s = ref_tokens / full_s
            print(
                f"transformers generate ({where}): {ref_tokens} tokens ({ref_steps} steps) in "
                f"{full_s:.2f} s"
            )
        reference_tokens_per_s = ref_tokens / full_s
        print(
            f"reference: {reference_tokens_per_s:.1f} tokens/s, "
            f"{ref_flops / full_s / 1e9:.1f} GFLOP/s = {ref_flops / full_s / peak:.1%} of peak"
        )
        figures.update(
            reference_device=ref_device,
            reference_device_name=reference.device_name(ref_device),
            reference_dtype=ref_dtype,
            reference_tokens_per_s=round(reference_tokens_per_s, 2),
            reference_measured_tokens_per_s=round(measured_tokens_per_s, 2),
            reference_new_tokens=list(lengths),
            reference_extrapolated=extrapolate,
            reference_peak_fraction=round(ref_flops / full_s / peak, 4),
            speedup=round(tokens_per_s / reference_tokens_per_s, 2),
        )
        print(f"speedup: {figures['speedup']}x")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
