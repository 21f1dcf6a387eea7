"""Constrained decoding benchmark: what the grammar guarantees and what it costs per token.

A random tiny T5 (the built-in DSL tokenizer) samples 4 tasks x 24 programs, once with the
plain program-token mask (``disallowed_tokens="mask"``) and once with the typed grammar
(`codeit_jax.policy.grammar.TypedGrammar`); then the same with a small byte-level BPE tokenizer
trained here on random programs, unconstrained vs the token-trie grammar
(`codeit_jax.policy.grammar_bpe.BPEGrammar`). One device, the same keys for both modes, which take
turns; the best of ``--repeats`` rounds counts (the machine is shared, and a round is so short
that a few rounds leave the ratio to chance: see docs/benchmarks.md).

Speed is reported two ways. ``tokens_per_s`` counts decode slots (rows x loop steps per
second): the per-step cost, which is what the constraint adds to. ``emitted_tokens_per_s``
counts tokens up to EOS; with a random model the two modes write programs of very different
lengths (unconstrained rows rarely draw EOS and run to ``max_new_tokens``; constrained rows stop
after their ``O`` line while the loop runs on for the longest row), so that figure says more
about lengths than about cost. Prints the figures, then one JSON line.

    python -m codeit_jax.bench.constrained [--samples-out=samples.jsonl] [--repeats=20]
        [--model=tiny]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from typing import Any

import jax
import numpy as np

from codeit_jax.files import codeit_data_dir
from codeit_jax.policy.grammar import TypedGrammar
from codeit_jax.policy.grammar_bpe import BPEGrammar
from codeit_jax.policy.mesh import make_mesh
from codeit_jax.policy.sampler import Sampler
from codeit_jax.policy.t5 import init_params, named_config
from codeit_jax.policy.tokenizer import DSLTokenizer, HFTokenizer, Tokenizer
from codeit_jax.programs.program import ProgramError, parse
from codeit_jax.programs.random_programs import RandomProgramSampler
from codeit_jax.programs.types import SignatureTable, TypeCheckError, check_types, signature_table


def rates(texts: Sequence[str], table: SignatureTable) -> tuple[float, float]:
    """(share that parses, share that parses and passes `check_types`)."""
    parsed = typed = 0
    for text in texts:
        try:
            program = parse(text)
        except ProgramError:
            continue
        parsed += 1
        try:
            check_types(program, table)
            typed += 1
        except TypeCheckError:
            pass
    return parsed / len(texts), typed / len(texts)


def time_modes(
    modes: dict[str, Callable[[jax.Array], Any]], tokenizer: Tokenizer, repeats: int
) -> dict[str, dict[str, Any]]:
    """Compile each mode, then time ``repeats`` rounds (key r in round r), the modes taking
    turns within a round so that a change of machine load hits both; the best round counts.
    Also the texts of round 1."""
    for sample in modes.values():
        sample(jax.random.key(0))  # compile
    results: dict[str, dict[str, Any]] = {
        name: {"tokens_per_s": 0.0, "emitted_tokens_per_s": 0.0} for name in modes
    }
    for repeat in range(1, repeats + 1):
        for name, sample in modes.items():
            begin = time.perf_counter()
            out = sample(jax.random.key(repeat))
            seconds = time.perf_counter() - begin
            result = results[name]
            rows = out.lengths.size
            slots = rows * int(out.lengths.max())  # one device: the loop runs to the longest row
            result["tokens_per_s"] = max(result["tokens_per_s"], slots / seconds)
            result["emitted_tokens_per_s"] = max(
                result["emitted_tokens_per_s"], int(out.lengths.sum()) / seconds
            )
            if repeat == 1:
                result["texts"] = [tokenizer.decode(row) for row in out.tokens.reshape(rows, -1)]
                result["mean_length"] = float(out.lengths.mean())
    return results


def bpe_tokenizer(programs: Sequence[str], directory: str, vocab_size: int = 1000) -> HFTokenizer:
    """A byte-level BPE tokenizer with CodeT5's ``<s> ... </s>`` framing, trained on
    ``programs`` and saved to ``directory`` (the tests build theirs here too)."""
    from tokenizers import Tokenizer as RawTokenizer
    from tokenizers import decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    raw = RawTokenizer(models.BPE(unk_token="<unk>"))
    raw.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    raw.decoder = decoders.ByteLevel()
    raw.train_from_iterator(
        programs,
        trainers.BpeTrainer(
            vocab_size=vocab_size,
            special_tokens=["<pad>", "<s>", "</s>", "<unk>"],
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        ),
    )
    raw.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", special_tokens=[("<s>", 1), ("</s>", 2)]
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=raw, pad_token="<pad>", bos_token="<s>", eos_token="</s>",
        unk_token="<unk>",
    )  # fmt: skip
    fast.save_pretrained(directory)
    return HFTokenizer(directory)


def compare(
    tokenizer: Tokenizer,
    constraint: Any,
    table: SignatureTable,
    args: argparse.Namespace,
) -> dict[str, dict[str, Any]]:
    """Unconstrained (program mask) and constrained runs on a random tiny model."""
    config = named_config(
        args.model, vocab_size=tokenizer.vocab_size, dtype="float32",
        pad_token_id=tokenizer.pad_id, eos_token_id=tokenizer.eos_id,
    )  # fmt: skip
    params = init_params(config, jax.random.key(args.seed))
    sampler = Sampler(config, mesh=make_mesh(jax.devices()[:1]))
    rng = np.random.default_rng(args.seed)
    inputs = [
        [*rng.integers(3, tokenizer.vocab_size, args.input_tokens).tolist(), tokenizer.eos_id]
        for _ in range(args.tasks)
    ]
    common = {"num_samples": args.samples, "max_new_tokens": args.max_new_tokens}
    program_mask = np.zeros(config.vocab_size, bool)
    program_mask[: tokenizer.vocab_size] = tokenizer.program_token_mask()
    modes = {
        "unconstrained": lambda key: sampler.sample(
            params, inputs, key, allowed_tokens=program_mask, **common
        ),
        "constrained": lambda key: sampler.sample(
            params, inputs, key, constraint=constraint, **common
        ),
    }
    results = time_modes(modes, tokenizer, args.repeats)
    for result in results.values():
        result["parse_rate"], result["typecheck_rate"] = rates(result["texts"], table)
    return results


def main(argv: list[str]) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples-out", default=None, help="constrained DSL samples, JSONL")
    parser.add_argument("--tasks", type=int, default=4)
    parser.add_argument("--samples", type=int, default=24)
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--input-tokens", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--model", default="tiny", help="T5 shape (random weights)")
    args = parser.parse_args(argv)
    load_before = os.getloadavg()[0]
    print(f"load average before: {load_before:.2f}, {jax.device_count()} device(s)")

    table = signature_table(codeit_data_dir())
    tokenizer = DSLTokenizer()
    begin = time.perf_counter()
    grammar = TypedGrammar(tokenizer, table)
    build_s = time.perf_counter() - begin
    dsl = compare(tokenizer, grammar, table, args)

    program_rng = random.Random(args.seed)
    random_programs = RandomProgramSampler(table)
    programs = [random_programs.sample(program_rng).text for _ in range(400)]
    with tempfile.TemporaryDirectory() as directory:
        hf_tokenizer = bpe_tokenizer(programs, directory)
        begin = time.perf_counter()
        trie = BPEGrammar(hf_tokenizer)
        hf_build_s = time.perf_counter() - begin
        hf = compare(hf_tokenizer, trie, table, args)

    if args.samples_out:
        with open(args.samples_out, "w") as f:
            for text in dsl["constrained"]["texts"]:
                f.write(json.dumps(text) + "\n")

    free, constrained = dsl["unconstrained"], dsl["constrained"]
    figures = {
        "parse_rate": constrained["parse_rate"],
        "typecheck_rate": constrained["typecheck_rate"],
        "tokens_per_s_ratio": constrained["tokens_per_s"] / free["tokens_per_s"],
        "constrained_tokens_per_s": constrained["tokens_per_s"],
        "unconstrained_tokens_per_s": free["tokens_per_s"],
        "emitted_tokens_per_s_ratio": (
            constrained["emitted_tokens_per_s"] / free["emitted_tokens_per_s"]
        ),
        "constrained_mean_length": constrained["mean_length"],
        "unconstrained_mean_length": free["mean_length"],
        "unconstrained_parse_rate": free["parse_rate"],
        "unconstrained_typecheck_rate": free["typecheck_rate"],
        "grammar_build_s": build_s,
        "hf_trie_tokens_per_s_ratio": (
            hf["constrained"]["tokens_per_s"] / hf["unconstrained"]["tokens_per_s"]
        ),
        "hf_constrained_tokens_per_s": hf["constrained"]["tokens_per_s"],
        "hf_unconstrained_tokens_per_s": hf["unconstrained"]["tokens_per_s"],
        "hf_trie_parse_rate": hf["constrained"]["parse_rate"],
        "hf_trie_typecheck_rate": hf["constrained"]["typecheck_rate"],
        "hf_unconstrained_parse_rate": hf["unconstrained"]["parse_rate"],
        "hf_trie_build_s": hf_build_s,
        "hf_trie_states": int(trie.tables()["moves"].shape[0]),
        "hf_trie_tokens": int(trie.tables()["moves"].shape[1]),
        "hf_vocab_size": hf_tokenizer.vocab_size,
    }
    for name, value in figures.items():
        print(f"{name:32s} {value:.4g}" if isinstance(value, float) else f"{name:32s} {value}")
    figures["load_average_before"] = load_before
    figures["load_average_after"] = os.getloadavg()[0]
    print(f"load average after: {figures['load_average_after']:.2f}")
    return figures


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1:])))
