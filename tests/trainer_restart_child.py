"""Child process for the kill-and-resume test in test_trainer.py (not collected by pytest).

Trains the tiny T5 for `--steps` optimizer steps, checkpointing after every step. With
`--announce K` it prints "CHECKPOINT K" once step K is committed (the parent then kills it with
SIGKILL while it keeps training). With `--resume` it restores the latest checkpoint first. At the
end it writes the parameters to `--out` (npz) and prints "DONE <step>".
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # this checkout's codeit_jax

import jax
import numpy as np

from codeit_jax.loop.checkpoint import CheckpointStore
from codeit_jax.policy.batching import EOS_ID, BucketBatcher
from codeit_jax.policy.t5 import T5, named_config
from codeit_jax.policy.trainer import TrainConfig, Trainer


def make_batcher() -> BucketBatcher:
    rng = np.random.default_rng(1)
    inputs = [rng.integers(2, 64, rng.integers(4, 30)).tolist() for _ in range(40)]
    labels = [[*x[: rng.integers(1, 12)], EOS_ID] for x in inputs]
    return BucketBatcher(inputs, labels, 8, input_buckets=(32,), label_buckets=(16,), seed=5)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("workdir", type=Path)
    parser.add_argument("--steps", type=int, required=True)
    parser.add_argument("--announce", type=int, default=-1)
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    config = TrainConfig(learning_rate=1e-3, warmup_steps=2, batch_size=8)
    trainer = Trainer(T5(named_config("tiny", dtype="float32")), config)
    batcher = make_batcher()
    store = CheckpointStore(args.workdir / "ckpt", max_to_keep=2)
    if args.resume:
        restored = store.restore(trainer.abstract_state())
        state, step = restored.state, restored.step
        assert restored.meta["step"] == step and int(restored.extra["step"]) == step
    else:
        state, step = trainer.init_state(), 0
    while step < args.steps:
        epoch, position = divmod(step, len(batcher))
        batch = batcher.make_batch(batcher.epoch_plan(epoch)[position])
        state, _ = trainer.step(state, batch)
        step += 1
        store.save(step, state, extra={"step": np.int64(step)}, meta={"step": step})
        if step == args.announce:
            store.wait()
            print(f"CHECKPOINT {step}", flush=True)
    store.close()
    if args.out is not None:
        leaves = jax.tree_util.tree_leaves_with_path(jax.device_get(state.params))
        np.savez(args.out, **{jax.tree_util.keystr(path): leaf for path, leaf in leaves})
    print(f"DONE {step}", flush=True)


if __name__ == "__main__":
    main()
