"""Replay: what the policy learns from, and how samples are scored.

Stage 5 (execution -> replay/relabel -> replay/buffer -> policy/trainer).

- ``relabel``: hindsight relabelling of executed programs into new tasks (`Experience`).
- ``experience``: encoding tasks into buffer records.
- ``buffer``: the prioritized `ReplayBuffer` (policy and mutated partitions).
- ``mutated_tasks``: the official mutated-task files and the A1 search files.
- ``metrics``: solution records, top-3 submission, the scoreboard and output files.
- ``paper_metric``: the paper's figure (policy solutions merged with the mutation baseline's).
- ``sample_stats``: per-iteration rates of the policy's samples.
"""
