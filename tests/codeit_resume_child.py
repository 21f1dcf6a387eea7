"""Child process of tests/test_resume.py: one CodeIt run of the tiny test config.

    python tests/codeit_resume_child.py DATA_DIR WORKDIR N_META_ITERATIONS [--pause] [--official]

The inference tasks of DATA_DIR/evaluation carry programs (the test copies training tasks
there): the policy's first sample of each task is replaced by that program, so that the run
records solutions and relabelled experience, which a random tiny policy never produces. The
other samples are the real sampler's.

With ``--pause`` the sandbox calls of meta-iteration 1 and later (recognised by log_0.json
being written) first create WORKDIR/../paused and sleep, so that the test can SIGKILL the run
at a known point in the middle of a meta-iteration. The outcomes are not changed. With
``--official`` the run uses the paper config's CodeIt switches (optimizer reset each
meta-iteration, loss on padding, no clipping, decay on all parameters, top-k, a disallowed
token ends the sample).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import codeit_jax.jobs.codeit as codeit_loop  # noqa: E402
from codeit_jax.jobs.codeit import open_sandbox, run  # noqa: E402
from codeit_jax.policy.encoding import bare_program  # noqa: E402
from codeit_jax.policy.sampler import SampleOutput, sequence_lengths  # noqa: E402
from codeit_jax.replay.experience import EncodingConfig, encode_input  # noqa: E402
from codeit_jax.tasks import load_codeit_dir  # noqa: E402
from tests.codeit_testing import tiny_config  # noqa: E402

PAUSE_S = 120


class PausingSandbox:
    """The real sandbox, pausing before each call once meta-iteration 0 is complete."""

    def __init__(self, config, workdir: Path):
        self.sandbox = open_sandbox(config)
        self.workdir = workdir

    def run(self, batch):
        if (self.workdir / "log_0.json").exists():
            (self.workdir.parent / "paused").touch()
            time.sleep(PAUSE_S)
        return self.sandbox.run(batch)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.sandbox.close()


class HintingSampler:
    """The real sampler, with sample 0 of each hinted task replaced by its program."""

    def __init__(self, sampler, tokenizer, hints: dict[tuple[int, ...], str]):
        self.sampler, self.tokenizer, self.hints = sampler, tokenizer, hints

    def sample(self, params, inputs, key, **settings) -> SampleOutput:
        tokens = np.array(self.sampler.sample(params, inputs, key, **settings).tokens)
        for i, task_input in enumerate(inputs):
            program = self.hints.get(tuple(task_input))
            if program is not None:
                ids = self.tokenizer.encode(program) + [self.tokenizer.eos_id]
                tokens[i, 0] = 0
                tokens[i, 0, : len(ids)] = ids
        return SampleOutput(tokens, sequence_lengths(tokens, self.tokenizer.eos_id))


def hint_programs(config) -> None:
    """Make the loop build its policy with a `HintingSampler`."""
    build_policy = codeit_loop.build_policy
    tasks = load_codeit_dir(Path(config.data.data_dir) / "evaluation")
    encoding = EncodingConfig(
        config.encoding.n_examples,
        config.encoding.input_state_max,
        config.encoding.max_program_tokens,
    )

    def build_hinted(*args, **kwargs):
        policy = build_policy(*args, **kwargs)
        hints = {
            tuple(encode_input(t, policy.tokenizer, encoding)): bare_program(t.program)
            for t in tasks
        }
        policy.sampler = HintingSampler(policy.sampler, policy.tokenizer, hints)
        return policy

    codeit_loop.build_policy = build_hinted


def main() -> None:
    data_dir, workdir, n_meta_iterations = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3])
    config = tiny_config(data_dir)
    config.n_meta_iterations = n_meta_iterations
    if "--official" in sys.argv[4:]:  # the paper config's switches that reproduce CodeIt
        config.train.reset_optimizer = True
        config.train.loss_on_padding = True
        config.train.batch_size = 16  # two micro-batches of 8, one row per device
        config.train.grad_accum_steps = 2
        config.train.max_grad_norm = 0.0
        config.train.weight_decay_on = "all"
        config.sampling.top_k = 5
        config.sampling.disallowed_tokens = "end"
    hint_programs(config)
    if "--pause" in sys.argv[4:]:
        run(config, workdir, executor_factory=lambda c: PausingSandbox(c, workdir))
    else:
        run(config, workdir)


if __name__ == "__main__":
    main()
