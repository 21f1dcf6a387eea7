"""The op profile: HLO sources, grouping into pieces, the table, and one real traced run."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import pytest

from codeit_jax.bench import op_profile

HLO = """
ENTRY %main {
  %ynn_fusion.2 = f32[96,32100]{1,0} fusion(%a, %b), kind=kCustom, calls=%c, metadata={op_name="jit(_sharded)/while/body/T5.decode/shared.attend/dot_general" stack_frame_id=1}
  %dot.7 = f32[96,8,1,32]{3,2,1,0} dot(%x, %y), lhs_batch_dims={0,1}
  %fusion.3 = f32[96]{0} fusion(%z), kind=kLoop, calls=%d, metadata={op_name="jit(_sharded)/while/body/reduce_max"}
  %ynn_fusion.9 = f32[96,2048]{1,0} fusion(%a, %w), kind=kCustom, calls=%e, metadata={op_name="jit(_sharded)/while/body/T5.decode/decoder/layers_3/mlp/wi/dot_general"}
}
"""  # noqa: E501


def test_sources_and_pieces():
    sources = op_profile.op_sources(HLO)
    assert sources["dot.7"] == " dot dot.7"  # XLA left it without metadata
    assert sources["fusion.3"].endswith("reduce_max fusion fusion.3")
    seconds = {"ynn_fusion.2": 2.0, "dot.7": 0.5, "fusion.3": 0.25, "ynn_fusion.9": 1.0, "x": 0.1}
    counts = dict.fromkeys(seconds, 4)
    pieces = op_profile.by_piece(seconds, counts, sources, op_profile.SAMPLER_PIECES, top=1)
    assert pieces["lm_head"]["seconds"] == 2.0
    assert pieces["self_attention"]["seconds"] == 0.5
    assert pieces["sampling"]["seconds"] == 0.25
    assert pieces["feed_forward"]["seconds"] == 1.0 and pieces["feed_forward"]["ops"] == 4
    assert pieces["unmatched"]["seconds"] == pytest.approx(0.1)
    assert pieces["lm_head"]["top"] == [(2.0, 4, sources["ynn_fusion.2"].strip())]
    text, rows = op_profile.table(pieces, {"lm_head": 4e9, "feed_forward": 1e9}, peak=4e9)
    assert rows["lm_head"]["gflops_per_s"] == 2.0 and rows["lm_head"]["share"] == 0.5195
    assert "total" in text.splitlines()[-1]


def test_a_traced_run_is_split_into_pieces(tmp_path):
    f = jax.jit(lambda a, b: jnp.tanh(a @ b).sum())
    a = jnp.ones((64, 64))
    compiled = f.lower(a, a).compile()
    f(a, a).block_until_ready()
    pieces, wall = op_profile.traced_run(
        lambda: f(a, a).block_until_ready(),
        compiled.as_text(),
        [("everything", r".")],
        str(tmp_path),
    )
    assert wall > 0 and pieces["everything"]["seconds"] > 0 and pieces["everything"]["ops"] >= 1
    assert pieces["unmatched"]["ops"] == 0
