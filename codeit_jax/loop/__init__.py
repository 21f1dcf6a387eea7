"""The CodeIt loop: wires the stages into meta-iterations; no stage imports it.

- ``iteration``: one meta-iteration (train, sample, execute, relabel, score).
- ``inference``: sample the policy, execute, relabel (`infer`).
- ``policy``: the `Policy` (tokenizer, model, trainer, sampler) a run config asks for.
- ``seeds``: the tasks a run starts from and the tasks it solves.
- ``inputs`` / ``outputs``: what a run reads before it writes, and the files it writes.
- ``state``: the resumable `RunState`; ``streams``: each meta-iteration's random streams;
  ``run_checkpoints``: saving and restoring a `RunState`; ``checkpoint``: the Orbax store;
  ``integrity``: checksums; ``digests``: parameter and buffer digests; ``workdir_lock``: one
  run per working directory.
"""
