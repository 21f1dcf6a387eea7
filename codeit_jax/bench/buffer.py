"""Replay buffer benchmark: fill 1,000,000 entries, then ``sample(90_000, 10_000)``.

The paper's per-meta-iteration draw (90,000 policy + 10,000 mutated experiences) from a buffer
of the size a long run reaches. Token sequences are short here (``--input_tokens``,
``--label_tokens``) so the benchmark fits a shared machine's memory; sampling cost does not
depend on their length (samples are views). Prints the figures, then one JSON line.

    python -m codeit_jax.bench.buffer [--entries=1000000] [--repeats=3]
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np

from codeit_jax.replay.buffer import BufferConfig, NewEntry, ReplayBuffer


def fill(
    buffer: ReplayBuffer, entries: int, input_tokens: int, label_tokens: int, seed: int
) -> float:
    """Add ``entries`` entries (90% policy, 10% mutated) in chunks; returns seconds spent."""
    rng = np.random.default_rng(seed)
    chunk = 50_000
    n_mutated = entries // 10
    start = time.perf_counter()
    for partition, count in (("policy", entries - n_mutated), ("mutated", n_mutated)):
        for first in range(0, count, chunk):
            n = min(chunk, count - first)
            ids = rng.integers(3, 600, size=(n, input_tokens + label_tokens), dtype=np.int32)
            perf, dist = rng.random(n), rng.random(n)
            entries = [
                NewEntry(
                    f"task{(first + k) % 400:03d}",
                    f"x1 = f{first + k}(I)\nO = g(x1)",
                    ids[k, :input_tokens],
                    ids[k, input_tokens:],
                    float(perf[k]),
                    float(dist[k]),
                )
                for k in range(n)
            ]
            buffer.add_many(partition, entries, rng.integers(0, 100, size=n))
    return time.perf_counter() - start


def main(argv: list[str]) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--n_policy", type=int, default=90_000)
    parser.add_argument("--n_mutated", type=int, default=10_000)
    parser.add_argument("--input_tokens", type=int, default=32)
    parser.add_argument("--label_tokens", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    # All four priority terms on, so the benchmark pays for the full priority formula.
    config = BufferConfig(length_penalty=0.5, age_penalty=0.5, distance_penalty=0.5)
    buffer = ReplayBuffer(config)
    add_seconds = fill(buffer, args.entries, args.input_tokens, args.label_tokens, args.seed)
    print(f"added {len(buffer):,} entries in {add_seconds:.2f} s")

    rng = np.random.default_rng(args.seed + 1)
    times = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        batch = buffer.sample(args.n_policy, args.n_mutated, rng)
        times.append(time.perf_counter() - start)
    expected = min(args.n_policy, buffer.size("policy")) + min(
        args.n_mutated, buffer.size("mutated")
    )
    if len(batch) != expected:
        raise RuntimeError(f"sampled {len(batch)} entries, expected {expected}")
    best = min(times)
    print(
        f"sample({args.n_policy:,}, {args.n_mutated:,}) from {len(buffer):,} entries: "
        f"best {best:.3f} s, all {', '.join(f'{t:.3f}' for t in times)}"
    )

    start = time.perf_counter()
    state = buffer.state_dict()
    state_seconds = time.perf_counter() - start
    start = time.perf_counter()
    ReplayBuffer.from_state_dict(state)
    restore_seconds = time.perf_counter() - start
    print(f"state_dict {state_seconds:.2f} s, from_state_dict {restore_seconds:.2f} s")

    figures = {
        "entries": len(buffer),
        "sample_seconds": round(best, 4),
        "sampled": len(batch),
        "add_seconds": round(add_seconds, 3),
        "state_dict_seconds": round(state_seconds, 3),
        "from_state_dict_seconds": round(restore_seconds, 3),
    }
    print(json.dumps(figures))
    return figures


if __name__ == "__main__":
    main(sys.argv[1:])
