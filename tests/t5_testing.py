"""Helpers of the transformers parity tests: test_convert.py (tiny models on the CPU) and
test_gpu.py (codet5-small on a GPU). torch and transformers are imported by the callers."""

from __future__ import annotations

import jax
import numpy as np

from codeit_jax.policy.sampler import Sampler
from codeit_jax.policy.t5 import T5Config


def torch_logits(model, ids, mask, decoder_ids) -> np.ndarray:
    """A transformers T5's float32 logits for one teacher-forced batch, on the model's device."""
    import torch

    def tensor(x) -> torch.Tensor:
        return torch.as_tensor(np.asarray(x, np.int64), device=model.device)

    with torch.no_grad():
        return (
            model(
                input_ids=tensor(ids),
                attention_mask=tensor(mask),
                decoder_input_ids=tensor(decoder_ids),
            )
            .logits.float()
            .cpu()
            .numpy()
        )


def generate_greedy(model, ids, mask, max_new: int) -> np.ndarray:
    """transformers' greedy ``generate`` with pad (token 0) suppressed: [rows, max_new] new
    tokens, the decoder start token dropped and rows that stopped early padded with 0."""
    import torch

    def tensor(x) -> torch.Tensor:
        return torch.as_tensor(np.asarray(x, np.int64), device=model.device)

    with torch.no_grad():
        out = model.generate(
            input_ids=tensor(ids), attention_mask=tensor(mask), do_sample=False, num_beams=1,
            max_new_tokens=max_new, min_new_tokens=0, suppress_tokens=[0],
            use_cache=False,  # transformers 5.24 cache breaks with num_decoder_layers != num_layers
        )  # fmt: skip
    generated = out.cpu().numpy()[:, 1:]
    return np.pad(generated, ((0, 0), (0, max_new - generated.shape[1])))


def sample_greedy(
    config: T5Config, params, ids, mask, max_new: int, mesh=None, num_samples: int = 2
) -> np.ndarray:
    """Our sampler's greedy tokens [rows, num_samples, max_new] for the unpadded rows of
    ``ids``, with pad disallowed (as ``suppress_tokens=[0]`` in ``generate_greedy``)."""
    allowed = np.ones(config.vocab_size, bool)
    allowed[0] = False
    inputs = [row[m.astype(bool)].tolist() for row, m in zip(np.asarray(ids), np.asarray(mask))]
    out = Sampler(config, mesh=mesh).sample(
        params, inputs, jax.random.key(0), num_samples=num_samples, max_new_tokens=max_new,
        greedy=True, allowed_tokens=allowed,
    )  # fmt: skip
    return out.tokens
