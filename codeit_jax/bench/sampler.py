"""Sampler benchmark: this JAX sampler vs transformers' PyTorch ``generate``, same weights.

Workload (CodeIt's sampling step at codet5-small size): random codet5-small weights (60M
parameters, vocabulary 32,100), 4 tasks x 24 samples, 512 input tokens each, up to 128 new
tokens, temperature 0.95 over the full vocabulary (``--top-k 50``: CodeIt's top-k, on both
sides). With random weights EOS is rare, so nearly
every row runs the full 128 steps; tokens/s counts the tokens actually produced (EOS included,
padding after it not). ``--input-length 1024`` gives the paper config's inputs (512 tokens per
side, ``encoding.input_state_max``).

Reference: the same weights written with ``save_hf_checkpoint`` and loaded by
``T5ForConditionalGeneration``; ``generate(do_sample=True, temperature=0.95, top_k=--top-k,
num_return_sequences=24)`` (as generate does, it repeats each input 24 times and runs the
encoder on all 96 copies). It runs on ``--reference-device`` (default: ``cuda`` when torch sees
a GPU, else the CPU) in our compute dtype (``--reference-dtype auto``: bfloat16 on a GPU, the
model cast to it; float32 on the CPU), see ``codeit_jax.bench.reference``. It is timed at the
full length, after a warm-up call (a full-size one on a GPU, a small one on the CPU), like ours.
``--reference-new-tokens n1,n2`` instead times two short lengths and extrapolates linearly to
the full one, t(N) = t(n1) + (N - n1) * (t(n2) - t(n1)) / (n2 - n1), from each repeat's pair:
much quicker on a CPU, but the extrapolation multiplies the timing noise (by about
(N - n1) / (n2 - n1)) and, as attention grows with the length, flatters the reference a little.

Trust (`codeit_jax.bench.timing`): each side runs ``--repeats`` times on the same inputs and
key (default 3 on the CPU, 5 on an accelerator) and is reported as its median with its spread,
(max - min) / median; ``speedup`` and ``peak_fraction`` come from the medians. A side (ours,
the reference) that spreads more than 15% makes the JSON say ``"noisy": true`` and names it in
``noisy_sides``; the matmul peak's own spread is ``peak_spread`` and does not count. The 1-minute
load average before and after is in the text and the JSON.

Peak fraction: model FLOPs (``codeit_jax.policy.flops.sampling_flops``, useful work only) per
second over the FLOP rate of a large jitted matmul in our compute dtype measured in the same run
(float32 2048^3 on the CPU, bfloat16 8192^3 on a GPU; the best of 5 timings before ours, 5
after ours and 5 after the reference when it runs, so a busy moment does not lower the peak; on
the CPU each timing round times both XLA's default matmul kernels and the ones the sampler
compiles with, `codeit_jax.policy.flops.peak_kernel_options`, so the peak is the faster).
Compile time (ahead-of-time ``lower().compile()``) is reported separately and excluded from
tokens/s; a warm-up call precedes the timed ones.

``--program-vocab N`` also times sampling restricted to N random tokens (plus EOS), as CodeIt
restricts samples to its program vocabulary: the sampler then computes only those logits
(the reference is not run for it; it would still compute all 32,100).

Run: ``python -m codeit_jax.bench.sampler [--tasks 4 --samples 24 --input-length 512
--new-tokens 128 --repeats 3 --reference-new-tokens full|n1,n2 --no-reference
--reference-device cpu --reference-dtype float32 --program-vocab 512]``; the paper's input
length: ``--input-length 1024``. The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from typing import Any

import jax
import numpy as np

from codeit_jax.bench import reference
from codeit_jax.bench.timing import MatmulPeak, Timings, finish, load_average, repeat
from codeit_jax.host_process import prepare_process
from codeit_jax.policy.convert import save_hf_checkpoint
from codeit_jax.policy.flops import sampling_flops
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
    params: Any,
    inputs: list[list[int]],
    samples: int,
    new_tokens: int,
    repeats: int,
    allowed_tokens: np.ndarray | None = None,
    top_k: int = 0,
) -> tuple[float, Timings, int, int]:
    """(compile seconds, timings of the runs, tokens produced, decoder steps run).

    Every timed run uses the same key, so each does the same work and the spread of the
    timings is the machine's noise, not the samples'.
    """
    kwargs = dict(
        num_samples=samples,
        max_new_tokens=new_tokens,
        temperature=TEMPERATURE,
        allowed_tokens=allowed_tokens,
        top_k=top_k,
    )
    params = jax.device_put(params, replicated_sharding(sampler.mesh))
    start = time.perf_counter()
    sampler.lower(params, inputs, jax.random.key(0), **kwargs).compile()
    compile_s = time.perf_counter() - start
    sampler.sample(params, inputs, jax.random.key(0), **kwargs)  # warm-up
    outputs = []

    def run() -> None:  # sample() returns host arrays: the work is done when it returns
        outputs.append(sampler.sample(params, inputs, jax.random.key(1), **kwargs))

    timings = repeat(run, repeats)
    out = outputs[-1]
    return compile_s, timings, int(out.lengths.sum()), int(out.lengths.max())


def time_reference(
    directory: str,
    inputs: list[list[int]],
    samples: int,
    lengths: tuple[int, ...],
    device: str = "cpu",
    dtype: str = "float32",
    repeats: int = 1,
    top_k: int = 0,
) -> list[tuple[Timings, int, int]]:
    """[(timings, tokens produced, longest row)] of transformers' ``generate`` for each number
    of new tokens, after a warm-up call (the first call pays one-time set-up costs): a small
    one on the CPU, the full-size longest one on a GPU (kernel selection, allocator growth).

    Each repeat times every length in turn (so an extrapolation pairs timings taken close
    together), each call seeded alike, so the repeats do the same work.
    """
    import torch
    import transformers

    model = transformers.T5ForConditionalGeneration.from_pretrained(directory).eval()
    model = model.to(device, getattr(torch, dtype))
    ids = torch.tensor(inputs, device=device)
    settings = dict(do_sample=True, temperature=TEMPERATURE, top_k=top_k, top_p=1.0)

    def generate(input_ids, new_tokens: int, num_return_sequences: int = 1):
        return model.generate(
            input_ids=input_ids,
            attention_mask=torch.ones_like(input_ids),
            num_return_sequences=num_return_sequences,
            max_new_tokens=new_tokens,
            **settings,
        )

    seconds: dict[int, list[float]] = {n: [] for n in lengths}
    produced: dict[int, np.ndarray] = {}
    with torch.no_grad():
        if device == "cpu":
            generate(ids[:1, :32], 2)
        else:
            generate(ids, max(lengths), samples)
        for _ in range(repeats):
            for new_tokens in lengths:
                torch.manual_seed(0)
                reference.synchronize(device)
                start = time.perf_counter()
                out = generate(ids, new_tokens, samples)
                reference.synchronize(device)
                seconds[new_tokens].append(time.perf_counter() - start)
                generated = out[:, 1:].cpu().numpy()
                is_eos = generated == 1
                produced[new_tokens] = np.where(
                    is_eos.any(1), is_eos.argmax(1) + 1, (generated != 0).sum(1)
                )
    return [
        (Timings(tuple(seconds[n])), int(produced[n].sum()), int(produced[n].max()))
        for n in lengths
    ]


def extrapolate(short: Timings, long: Timings, n1: int, n2: int, n: int) -> Timings:
    """Each repeat's time for ``n`` new tokens, linear through its times for ``n1`` and ``n2``."""
    return Timings(
        tuple(
            t1 + (n - n1) * (t2 - t1) / (n2 - n1)
            for t1, t2 in zip(short.seconds, long.seconds, strict=True)
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="codet5_small")
    parser.add_argument("--tasks", type=int, default=4)
    parser.add_argument("--samples", type=int, default=24)
    parser.add_argument(
        "--input-length", type=int, default=512, help="tokens per task input (paper: 1024)"
    )
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--top-k", type=int, default=0, help="0: off; CodeIt samples with 50")
    parser.add_argument(
        "--repeats", type=int, default=None, help="timed runs per side: 3 on the CPU, else 5"
    )
    parser.add_argument(
        "--reference-new-tokens",
        default="full",
        help='"full" (default) or n1,n2: time those lengths and extrapolate (quicker, noisier)',
    )
    parser.add_argument("--no-reference", action="store_true")
    reference.add_arguments(parser)
    parser.add_argument("--program-vocab", type=int, default=0, help="also time a masked run")
    args = parser.parse_args()
    if args.top_k < 0:
        parser.error(f"--top-k must be >= 0 (0: off), got {args.top_k}")
    if not args.no_reference:
        reference.limit_jax_memory()

    load_before = load_average()
    config = named_config(args.config)
    params = init_params(config, jax.random.key(0))
    inputs = random_inputs(args.tasks, args.input_length, config.vocab_size)
    device = jax.devices()[0]
    if args.repeats is None:
        args.repeats = 3 if jax.default_backend() == "cpu" else 5
    peak = MatmulPeak(dtype=config.compute_dtype)
    print(
        f"backend {jax.default_backend()} ({device.device_kind}), {jax.device_count()} devices, "
        f"{os.cpu_count()} CPUs, load average {load_before} before, {platform.processor()}"
    )
    print(
        f"{args.config}: {count_params(params) / 1e6:.1f}M parameters, compute "
        f"{config.compute_dtype}; {args.tasks} tasks x {args.samples} samples, "
        f"{args.input_length} input tokens, up to {args.new_tokens} new tokens; "
        f"{args.repeats} timed runs per side"
    )

    peak.measure()
    sampler = Sampler(config)
    compile_s, ours, tokens, steps = time_sampler(
        sampler, params, inputs, args.samples, args.new_tokens, args.repeats, top_k=args.top_k
    )
    peak.measure()
    flops = sampling_flops(config, args.tasks, args.samples, args.input_length, steps)
    tokens_per_s = tokens / ours.median
    achieved = flops / ours.median
    spreads = {"ours": ours.spread}
    print(
        f"sampler: {tokens} tokens ({steps} steps) in {ours.describe()} = "
        f"{tokens_per_s:.1f} tokens/s; {flops / 1e9:.1f} GFLOP -> {achieved / 1e9:.1f} GFLOP/s; "
        f"compile {compile_s:.1f} s"
    )
    figures: dict[str, Any] = {
        "config": args.config,
        "backend": jax.default_backend(),
        "device": device.device_kind,
        "compute_dtype": str(config.compute_dtype),
        "tasks": args.tasks,
        "samples": args.samples,
        "input_length": args.input_length,
        "new_tokens": args.new_tokens,
        "top_k": args.top_k,
        "repeats": args.repeats,
        "tokens": tokens,
        "run_s": round(ours.median, 4),
        "ours": ours.summary(),
        "compile_s": round(compile_s, 2),
        "tokens_per_s": round(tokens_per_s, 1),
        "model_gflops_per_s": round(achieved / 1e9, 2),
        "peak_dtype": str(config.compute_dtype),
    }

    if args.program_vocab:
        allowed = np.zeros(config.vocab_size, bool)
        rng = np.random.default_rng(1)
        allowed[rng.choice(np.arange(2, config.vocab_size), args.program_vocab, replace=False)] = 1
        _, masked, masked_tokens, masked_steps = time_sampler(
            sampler,
            params,
            inputs,
            args.samples,
            args.new_tokens,
            args.repeats,
            allowed,
            args.top_k,
        )
        masked_flops = sampling_flops(
            config.replace(vocab_size=args.program_vocab + 1),
            args.tasks,
            args.samples,
            args.input_length,
            masked_steps,
        )
        spreads["ours_masked"] = masked.spread
        print(
            f"sampler, {args.program_vocab}-token program vocabulary: {masked_tokens} tokens in "
            f"{masked.describe()} = {masked_tokens / masked.median:.1f} tokens/s"
        )
        figures.update(
            program_vocab=args.program_vocab,
            masked=masked.summary(),
            masked_tokens_per_s=round(masked_tokens / masked.median, 1),
        )

    if not args.no_reference:
        ref_device, ref_dtype = reference.resolve(
            args.reference_device, args.reference_dtype, config.compute_dtype
        )
        extrapolated = args.reference_new_tokens != "full"
        if extrapolated:
            lengths = tuple(int(n) for n in args.reference_new_tokens.split(","))
            if len(lengths) != 2 or not 0 < lengths[0] < lengths[1]:
                parser.error("--reference-new-tokens takes full or n1,n2 with 0 < n1 < n2")
        else:
            lengths = (args.new_tokens,)
        with tempfile.TemporaryDirectory() as directory:
            save_hf_checkpoint(config.replace(dropout_rate=0.0), params, directory)
            timings = time_reference(
                directory,
                inputs,
                args.samples,
                lengths,
                ref_device,
                ref_dtype,
                args.repeats,
                args.top_k,
            )
        peak.measure()
        where = f"{reference.device_name(ref_device)}, {ref_dtype}"
        if extrapolated:  # from two short lengths (see the docstring)
            (n1, n2), ((t1, _, _), (t2, tokens2, _)) = lengths, timings
            ref = extrapolate(t1, t2, n1, n2, args.new_tokens)
            ref_tokens = args.tasks * args.samples * args.new_tokens
            ref_flops = flops
            measured_tokens_per_s = tokens2 / t2.median
            print(
                f"transformers generate ({where}): {n1} new tokens {t1.describe()}, {n2} new "
                f"tokens {t2.describe()} -> {args.new_tokens} tokens extrapolated "
                f"{ref.describe()}"
            )
        else:
            ((ref, ref_tokens, ref_steps),) = timings
            ref_flops = sampling_flops(
                config, args.tasks, args.samples, args.input_length, ref_steps
            )
            measured_tokens_per_s = ref_tokens / ref.median
            print(
                f"transformers generate ({where}): {ref_tokens} tokens ({ref_steps} steps) in "
                f"{ref.describe()}"
            )
        spreads["reference"] = ref.spread
        reference_tokens_per_s = ref_tokens / ref.median
        print(
            f"reference: {reference_tokens_per_s:.1f} tokens/s, "
            f"{ref_flops / ref.median / 1e9:.1f} GFLOP/s"
        )
        figures.update(
            reference_device=ref_device,
            reference_device_name=reference.device_name(ref_device),
            reference_dtype=ref_dtype,
            reference=ref.summary(),
            reference_tokens_per_s=round(reference_tokens_per_s, 2),
            reference_measured_tokens_per_s=round(measured_tokens_per_s, 2),
            reference_new_tokens=list(lengths),
            reference_extrapolated=extrapolated,
            reference_peak_fraction=round(ref_flops / ref.median / peak.best, 4),
            speedup=round(tokens_per_s / reference_tokens_per_s, 2),
        )
        print(f"speedup (ours / reference, medians): {figures['speedup']}x")

    figures.update(peak.summary(), peak_fraction=round(achieved / peak.best, 4))
    if args.program_vocab:
        figures["masked_peak_fraction"] = round(masked_flops / masked.median / peak.best, 4)
    print(f"matmul peak ({config.compute_dtype}): {peak.describe()}")
    print(
        f"ours: {achieved / peak.best:.1%} of peak"
        + (f"; reference {figures['reference_peak_fraction']:.1%}" if not args.no_reference else "")
    )
    finish(figures, spreads, load_before)


if __name__ == "__main__":
    prepare_process()  # before JAX starts
    main()
