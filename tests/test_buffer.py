"""Prioritized replay buffer: keys, priorities, capacity, sampling, serialisation."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from codeit_jax.replay.buffer import (
    PARTITIONS,
    BufferConfig,
    NewEntry,
    ReplayBuffer,
    TaskCounts,
)


def _add(
    buffer: ReplayBuffer,
    partition: str,
    parent: str,
    program: str,
    perf: float = 1.0,
    *,
    age: int = 0,
    distance: float = 0.0,
    ids: tuple[int, ...] = (5, 6),
) -> None:
    buffer.add(partition, parent, program, list(ids), [7, *ids, 1], perf, age, distance)


def _state_equal(a: dict, b: dict) -> bool:
    if a["meta"] != b["meta"]:
        return False
    for name in PARTITIONS:
        cols_a, cols_b = a["arrays"][name], b["arrays"][name]
        if cols_a.keys() != cols_b.keys():
            return False
        for key in cols_a:
            if cols_a[key].dtype != cols_b[key].dtype or not np.array_equal(
                cols_a[key], cols_b[key]
            ):
                return False
    return True


def test_entries_are_keyed_by_parent_and_program_and_replaced():
    buffer = ReplayBuffer()
    _add(buffer, "policy", "t1", "O = vmirror(I)", 0.5)
    _add(buffer, "policy", "t2", "O = vmirror(I)", 0.5)
    _add(buffer, "mutated", "t1", "O = vmirror(I)", 0.5)
    assert (len(buffer), buffer.size("policy"), buffer.size("mutated")) == (3, 2, 1)

    _add(buffer, "policy", "t1", "O = vmirror(I)", 1.0, age=3, ids=(9, 9, 9))
    assert buffer.size("policy") == 2
    entry = buffer.get("policy", "t1", "O = vmirror(I)")
    assert entry is not None
    assert (entry.performance, entry.age, entry.input_ids, entry.label_ids) == (
        1.0,
        3,
        (9, 9, 9),
        (7, 9, 9, 9, 1),
    )
    assert buffer.get("mutated", "t1", "O = vmirror(I)").performance == 0.5
    assert ("policy", "t2", "O = vmirror(I)") in buffer
    assert ("mutated", "t2", "O = vmirror(I)") not in buffer
    assert buffer.get("policy", "t3", "O = vmirror(I)") is None


def test_add_many_keeps_the_last_of_repeated_keys():
    buffer = ReplayBuffer()
    entries = [
        NewEntry(key, "p", [i], [o], perf)
        for key, i, o, perf in (("a", 1, 4, 0.1), ("b", 2, 5, 0.2), ("a", 3, 6, 0.3))
    ]
    buffer.add_many("policy", entries, 2)
    assert buffer.size("policy") == 2
    entry = buffer.get("policy", "a", "p")
    assert (entry.input_ids, entry.label_ids, entry.performance) == ((3,), (6,), 0.3)


def test_program_length_counts_lines():
    buffer = ReplayBuffer()
    _add(buffer, "policy", "t", "x1 = vmirror(I)\nx2 = hmirror(x1)\nO = hconcat(x1, x2)")
    assert (
        buffer.get(
            "policy", "t", "x1 = vmirror(I)\nx2 = hmirror(x1)\nO = hconcat(x1, x2)"
        ).program_length
        == 3
    )


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(partition="other"), "unknown partition"),
        (dict(performance=1.5), "performance"),
        (dict(performance=float("nan")), "performance"),
        (dict(age=[-1]), "age"),
        (dict(age=[1.5]), "age"),
        (dict(distance=-0.1), "distance"),
        (dict(input_ids=[[1, 2]]), "input_ids"),
        (dict(label_ids=[1.5]), "label_ids"),
        (dict(input_ids=[-3]), "token ids"),
        (dict(age=[0, 1]), r"age must be a scalar or have shape \(1,\)"),
    ],
)
def test_bad_input_is_rejected_and_changes_nothing(change, message):
    buffer = ReplayBuffer()
    _add(buffer, "policy", "t", "O = f(I)")
    before = buffer.state_dict()
    fields = dict(parent_key="u", program="O = g(I)", input_ids=[1], label_ids=[2], performance=0.5)
    fields.update({k: v for k, v in change.items() if k not in ("partition", "age")})
    with pytest.raises(ValueError, match=message):
        buffer.add_many(
            change.get("partition", "policy"), [NewEntry(**fields)], change.get("age", [0])
        )
    assert _state_equal(buffer.state_dict(), before)


def test_token_dtype_limits_ids():
    buffer = ReplayBuffer(BufferConfig(token_dtype="uint16"))
    buffer.add("policy", "t", "p", [65535], [1], 1.0, 0)
    with pytest.raises(ValueError, match="token ids"):
        buffer.add("policy", "t", "q", [65536], [1], 1.0, 0)


def test_config_validation_and_mapping():
    for bad in (
        dict(capacity=0),
        dict(reduce_percentage=1.0),
        dict(age_penalty=-1.0),
        dict(epsilon=0.0),
        dict(token_dtype="float32"),
    ):
        with pytest.raises(ValueError):
            BufferConfig(**bad)
    config = BufferConfig.from_mapping({"capacity": 5, "length_penalty": 0.5, "lr": 1e-3})
    assert (config.capacity, config.length_penalty, config.performance_penalty) == (5, 0.5, 1.0)


def test_priority_is_the_weighted_mean_of_the_terms_plus_epsilon():
    config = BufferConfig(
        performance_penalty=2.0,
        length_penalty=1.0,
        age_penalty=1.0,
        distance_penalty=4.0,
        epsilon=1e-3,
    )
    buffer = ReplayBuffer(config)
    _add(buffer, "policy", "t", "x1 = f(I)\nO = g(x1)", 0.5, age=1, distance=3.0)
    _add(buffer, "policy", "t", "O = f(I)", 1.0, age=4, distance=0.0)
    assert buffer.now == 4
    expected = [
        (2 * 0.5 + 1 / 2 + 1 / (1 + 3) + 4 / (1 + 3)) / 8 + 1e-3,
        (2 * 1.0 + 1 / 1 + 1 / 1 + 4 / 1) / 8 + 1e-3,
    ]
    np.testing.assert_allclose(buffer.priorities("policy"), expected)
    buffer.advance(9)  # both entries age; the age term shrinks
    np.testing.assert_allclose(
        buffer.priorities("policy"),
        [expected[0] - (1 / 4 - 1 / 9) / 8, expected[1] - (1 - 1 / 6) / 8],
    )
    with pytest.raises(ValueError, match="went back"):
        buffer.advance(8)


def test_uniform_priorities_when_switched_off():
    buffer = ReplayBuffer(BufferConfig(priority_in_mutated=False))
    _add(buffer, "mutated", "a", "p", 0.0)
    _add(buffer, "mutated", "b", "p", 1.0)
    _add(buffer, "policy", "a", "p", 0.0)
    _add(buffer, "policy", "b", "p", 1.0)
    pri = buffer.priorities("mutated")
    assert pri[0] == pri[1]
    assert buffer.priorities("policy")[1] > buffer.priorities("policy")[0]
    zero = ReplayBuffer(BufferConfig(performance_penalty=0.0))
    _add(zero, "policy", "a", "p", 0.0)
    _add(zero, "policy", "b", "p", 1.0)
    assert len(set(zero.priorities("policy").tolist())) == 1


def test_full_partition_keeps_its_top_entries():
    buffer = ReplayBuffer(BufferConfig(capacity=10, reduce_percentage=0.3))
    perfs = [0.9, 0.1, 0.5, 0.5, 0.8, 0.2, 0.3, 0.7, 0.6, 0.4]
    for k, perf in enumerate(perfs):
        _add(buffer, "policy", f"t{k}", "p", perf, ids=(k,))
    assert buffer.size("policy") == 10
    _add(buffer, "mutated", "m", "p", 0.0)  # other partition: no effect
    _add(buffer, "policy", "t10", "p", 0.55, ids=(10,))
    kept = {e.parent_key for e in buffer.entries("policy")}
    assert kept == {"t0", "t4", "t7", "t8", "t10", "t2", "t3"}  # the top 7 of 11
    assert buffer.size("mutated") == 1
    for entry in buffer.entries("policy"):  # tokens follow their entries through compaction
        assert entry.input_ids == (int(entry.parent_key[1:]),)
    # Replacing an entry of a full partition does not reduce it.
    _add(buffer, "policy", "t0", "p", 0.95, ids=(0,))
    assert buffer.size("policy") == 7


def test_reduction_prefers_the_newest_among_equal_priorities():
    buffer = ReplayBuffer(BufferConfig(capacity=4, reduce_percentage=0.5))
    for k in range(5):
        _add(buffer, "policy", f"t{k}", "p", 0.0)
    assert [e.parent_key for e in buffer.entries("policy")] == ["t3", "t4"]


def test_sample_returns_everything_when_asked_for_more_than_there_is():
    buffer = ReplayBuffer()
    for k in range(5):
        _add(buffer, "policy", f"t{k}", "p", 0.0, ids=(k,))
    _add(buffer, "mutated", "m", "p", ids=(99,))
    rng = np.random.default_rng(0)
    batch = buffer.sample(10, 0, rng)
    assert sorted(batch.rows.tolist()) == list(range(5)) and (batch.partition == 0).all()
    assert sorted(int(ids[0]) for ids in batch.input_ids) == list(range(5))
    batch = buffer.sample(0, 3, rng)
    assert batch.partition.tolist() == [1] and batch.input_ids[0].tolist() == [99]
    assert len(buffer.sample(0, 0, rng)) == 0
    with pytest.raises(ValueError):
        buffer.sample(-1, 0, rng)
    assert not batch.input_ids[0].flags.writeable


@st.composite
def buffers_and_requests(draw: st.DrawFn):
    config = BufferConfig(
        capacity=draw(st.one_of(st.none(), st.integers(1, 30))),
        reduce_percentage=draw(st.sampled_from([0.0, 0.2, 0.5])),
        length_penalty=draw(st.sampled_from([0.0, 1.0])),
        age_penalty=draw(st.sampled_from([0.0, 1.0])),
        priority_in_mutated=draw(st.booleans()),
    )
    ops = draw(
        st.lists(
            st.tuples(
                st.sampled_from(PARTITIONS),
                st.integers(0, 6),  # parent
                st.integers(0, 6),  # program
                st.floats(0, 1),
                st.integers(0, 5),
                st.lists(st.integers(0, 1000), max_size=6),
                st.booleans(),  # a seed task (mutated partition only)
            ),
            max_size=60,
        )
    )
    requests = (draw(st.integers(0, 40)), draw(st.integers(0, 40)))
    return config, ops, requests


def _build(config: BufferConfig, ops) -> ReplayBuffer:
    """The ops' buffer; each label ends with the seed mark, so entries can check theirs."""
    buffer = ReplayBuffer(config)
    for partition, parent, program, perf, age, ids, seed in ops:
        tag = PARTITIONS.index(partition)
        seed = seed and partition == "mutated"
        entry = NewEntry(
            f"t{parent}", f"O = f{program}(I)\nx{parent} = g(I)", ids,
            [tag, parent, program, int(seed)], perf,
        )  # fmt: skip
        buffer.add_many(partition, [entry], age, seed=seed)
    return buffer


@settings(max_examples=150, deadline=None)
@given(buffers_and_requests(), st.integers(0, 2**32 - 1))
def test_samples_have_no_duplicates_and_respect_partitions(case, seed):
    config, ops, (n_policy, n_mutated) = case
    buffer = _build(config, ops)
    if config.capacity is not None:
        assert all(buffer.size(p) <= config.capacity for p in PARTITIONS)
    batch = buffer.sample(n_policy, n_mutated, np.random.default_rng(seed))
    counts = [int((batch.partition == k).sum()) for k in range(2)]
    assert counts == [min(n_policy, buffer.size("policy")), min(n_mutated, buffer.size("mutated"))]
    pairs = list(zip(batch.partition.tolist(), batch.rows.tolist()))
    assert len(set(pairs)) == len(pairs)
    entries = {name: list(buffer.entries(name)) for name in PARTITIONS}
    for (part, row), ins, labs in zip(pairs, batch.input_ids, batch.label_ids):
        entry = entries[PARTITIONS[part]][row]
        assert tuple(ins.tolist()) == entry.input_ids
        assert tuple(labs.tolist()) == entry.label_ids
        assert labs[0] == part  # the label records the partition it was added to
    # Seed marks stay with their entries through replacement, reduction and compaction.
    for name in PARTITIONS:
        for entry in entries[name]:
            expected = "policy" if name == "policy" else ("mutated", "seed")[entry.label_ids[-1]]
            assert entry.origin == expected
    seeds = sum(e.origin == "seed" for e in entries["mutated"])
    assert buffer.task_counts() == TaskCounts(
        seeds, buffer.size("mutated") - seeds, buffer.size("policy")
    )


@settings(max_examples=100, deadline=None)
@given(buffers_and_requests())
def test_state_dict_round_trips_exactly(case):
    config, ops, (n_policy, n_mutated) = case
    buffer = _build(config, ops)
    state = buffer.state_dict()
    json.dumps(state["meta"])  # the non-array part is JSON-able
    restored = ReplayBuffer.from_state_dict(state)
    assert _state_equal(restored.state_dict(), state)
    for name in PARTITIONS:
        assert list(restored.entries(name)) == list(buffer.entries(name))
    a = buffer.sample(n_policy, n_mutated, np.random.default_rng(7))
    b = restored.sample(n_policy, n_mutated, np.random.default_rng(7))
    assert a.rows.tolist() == b.rows.tolist() and a.partition.tolist() == b.partition.tolist()
    # Both keep working identically after the restore.
    for buf in (buffer, restored):
        _add(buf, "policy", "t0", "O = f0(I)\nx0 = g(I)", 0.25, age=6, ids=(1, 2, 3))
    assert _state_equal(restored.state_dict(), buffer.state_dict())


def test_state_dict_keeps_unicode_and_replaced_tokens():
    buffer = ReplayBuffer()
    _add(buffer, "policy", "tâche", "O = f(I)", ids=(1, 2))
    for k in range(20):  # many replacements trigger compaction
        _add(buffer, "policy", "tâche", "O = f(I)", ids=tuple(range(k + 1)))
    restored = ReplayBuffer.from_state_dict(buffer.state_dict())
    assert restored.get("policy", "tâche", "O = f(I)").input_ids == tuple(range(20))


def test_from_state_dict_rejects_broken_states():
    buffer = ReplayBuffer()
    _add(buffer, "policy", "t", "p")
    with pytest.raises(ValueError, match="not a replay buffer state"):
        ReplayBuffer.from_state_dict({"arrays": {}})
    state = buffer.state_dict()
    state["meta"]["version"] = 99
    with pytest.raises(ValueError, match="version"):
        ReplayBuffer.from_state_dict(state)
    state = buffer.state_dict()
    state["arrays"]["policy"]["tokens"] = state["arrays"]["policy"]["tokens"][:-1]
    with pytest.raises(ValueError, match="inconsistent"):
        ReplayBuffer.from_state_dict(state)
    state = buffer.state_dict()
    del state["arrays"]["mutated"]
    with pytest.raises(ValueError, match="no partition"):
        ReplayBuffer.from_state_dict(state)


def test_seeds_are_counted_apart_and_sampled_alike():
    def fill(mark: bool) -> ReplayBuffer:
        buffer = ReplayBuffer(BufferConfig(capacity=6, reduce_percentage=0.5))
        seeds = [NewEntry(f"s{k}", "O = f(I)", [k], [1], 1.0) for k in range(3)]
        buffer.add_many("mutated", seeds, 0, seed=mark)
        buffer.add_many("mutated", [NewEntry("s0", "O = g(I)", [9], [1], 0.0)], 0)
        _add(buffer, "policy", "p", "O = f(I)")
        return buffer

    buffer, unmarked = fill(True), fill(False)
    assert buffer.task_counts() == TaskCounts(seed=3, mutated=1, policy=1)
    assert unmarked.task_counts() == TaskCounts(seed=0, mutated=4, policy=1)
    assert [e.origin for e in buffer.entries("mutated")] == ["seed"] * 3 + ["mutated"]
    # The mark is for counting only: same priorities, same samples.
    np.testing.assert_array_equal(buffer.priorities("mutated"), unmarked.priorities("mutated"))
    a, b = (buf.sample(1, 2, np.random.default_rng(3)) for buf in (buffer, unmarked))
    assert a.rows.tolist() == b.rows.tolist() and a.partition.tolist() == b.partition.tolist()
    # An entry added again takes the mark (and the content) of the later add.
    buffer.add_many("mutated", [NewEntry("s1", "O = f(I)", [7], [1], 0.0)], 1)
    assert buffer.get("mutated", "s1", "O = f(I)").origin == "mutated"
    assert buffer.task_counts() == TaskCounts(seed=2, mutated=2, policy=1)
    # A reduction keeps the marks with their rows: the two seeds left (performance 1) and the
    # newest of the rest stay.
    more = [NewEntry(f"m{k}", "O = h(I)", [k], [1], 0.5) for k in range(3)]
    buffer.add_many("mutated", more, 2)
    kept = {e.parent_key: e.origin for e in buffer.entries("mutated")}
    assert kept == {"s0": "seed", "s2": "seed", "m2": "mutated"}
    assert buffer.task_counts() == TaskCounts(seed=2, mutated=1, policy=1)
    before = buffer.state_dict()
    with pytest.raises(ValueError, match="mutated partition"):
        buffer.add_many("policy", [NewEntry("x", "p", [1], [1])], 0, seed=True)
    assert _state_equal(buffer.state_dict(), before)


def test_a_state_saved_before_the_seed_column_restores_with_unknown_seeds():
    """Such a state kept its seeds unmarked in the mutated partition: they cannot be told from
    mutated tasks, so they count as mutated, as every entry there did, and the seed count is
    unknown (None) until none of them is left; policy entries are known."""
    buffer = ReplayBuffer()
    buffer.add_many("mutated", [NewEntry("s", "O = f(I)", [1], [1], 0.0)], 0, seed=True)
    buffer.add_many("mutated", [NewEntry("s", "O = g(I)", [2], [1], 0.0)], 0)
    _add(buffer, "policy", "p", "O = f(I)")
    old = buffer.state_dict()
    for name in PARTITIONS:
        del old["arrays"][name]["seed"]
    restored = ReplayBuffer.from_state_dict(old)
    assert restored.task_counts() == TaskCounts(seed=None, mutated=2, policy=1)
    assert [e.origin for e in restored.entries("mutated")] == ["unknown", "unknown"]
    assert [e.origin for e in restored.entries("policy")] == ["policy"]
    # Saved again, the unknown marks stay unknown; new entries are marked as usual.
    again = ReplayBuffer.from_state_dict(restored.state_dict())
    again.add_many("mutated", [NewEntry("t", "O = f(I)", [3], [1], 0.0)], 1, seed=True)
    assert again.task_counts() == TaskCounts(seed=None, mutated=2, policy=1)
    # Once every unknown entry is replaced, the seed count is known again.
    again.add_many("mutated", [NewEntry("s", "O = f(I)", [4], [1], 0.0)], 1)
    again.add_many("mutated", [NewEntry("s", "O = g(I)", [5], [1], 0.0)], 1)
    assert again.task_counts() == TaskCounts(seed=1, mutated=2, policy=1)
    # A seed column that does not fit is refused.
    for bad in (np.zeros(5, np.int8), np.full(2, 7, np.int8)):
        state = buffer.state_dict()
        state["arrays"]["mutated"]["seed"] = bad
        with pytest.raises(ValueError, match="seed column"):
            ReplayBuffer.from_state_dict(state)


def test_single_draw_frequencies_follow_priorities():
    buffer = ReplayBuffer(BufferConfig(epsilon=1e-9))
    perfs = [0.05, 0.1, 0.15, 0.3, 0.4]
    for k, perf in enumerate(perfs):
        _add(buffer, "policy", f"t{k}", "p", perf)
    rng = np.random.default_rng(1234)
    draws = 20_000
    counts = np.bincount(
        [int(buffer.sample_rows("policy", 1, rng)[0]) for _ in range(draws)], minlength=5
    )
    expected = np.array(perfs) / sum(perfs)
    # ~5 standard deviations of a binomial proportion at these sizes
    assert np.all(np.abs(counts / draws - expected) < 0.02), counts / draws


def test_multi_draw_inclusion_follows_sequential_sampling():
    """With k draws without replacement, inclusion probabilities match the sequential
    (draw, remove, renormalise) process; checked against its exact value for k=2."""
    buffer = ReplayBuffer(BufferConfig(epsilon=1e-9))
    perfs = np.array([0.1, 0.2, 0.3, 0.4])
    for k, perf in enumerate(perfs):
        _add(buffer, "policy", f"t{k}", "p", float(perf))
    p = perfs / perfs.sum()
    exact = p + np.array(
        [sum(p[j] * p[i] / (1 - p[j]) for j in range(4) if j != i) for i in range(4)]
    )
    rng = np.random.default_rng(99)
    draws = 20_000
    counts = np.zeros(4)
    for _ in range(draws):
        counts[buffer.sample_rows("policy", 2, rng)] += 1
    assert np.all(np.abs(counts / draws - exact) < 0.02), (counts / draws, exact)


def test_benchmark_runs_small():
    from codeit_jax.bench.buffer import main

    figures = main(["--entries=3000", "--n_policy=900", "--n_mutated=100", "--repeats=1"])
    assert (figures["entries"], figures["sampled"]) == (3000, 1000)
    assert figures["sample_seconds"] > 0
