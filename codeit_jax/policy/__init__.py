"""Policy: the seq2seq model that reads a task and writes a program, its training and sampling.

Stage 4 (tasks -> policy/encoding -> replay -> policy/trainer; policy/sampler -> program text).

- ``t5``: the Flax T5 (`T5`, `T5Config`, `named_config`); ``convert``: local Hugging Face
  checkpoints in and out.
- ``tokenizer``: the built-in DSL tokenizer and Hugging Face tokenizers (`Tokenizer`).
- ``encoding``: grids and tasks as text, programs as token ids.
- ``batching``: length buckets and padded batches (`Batch`, `BucketBatcher`).
- ``mesh``: the device mesh and shardings (data parallelism).
- ``sampler``: the jitted sampler (`Sampler`), optionally constrained by ``grammar`` (typed DSL
  grammar, built-in tokenizer) or ``grammar_bpe`` (token trie, Hugging Face tokenizer).
- ``trainer``: the data-parallel trainer (`Trainer`, `TrainConfig`, `TrainState`).
- ``flops``: FLOP counts for the benchmarks.
"""
