"""Local Hugging Face T5 / CodeT5 / CodeT5+ checkpoints <-> Flax T5 parameters.

Only local directories are read (never the hub): ``config.json`` plus ``model.safetensors``,
a sharded ``model.safetensors.index.json``, or ``pytorch_model.bin`` (needs torch, imported
only then). Writing produces ``config.json`` + ``model.safetensors`` that transformers'
``T5ForConditionalGeneration.from_pretrained`` loads, so a trained policy can be used from
PyTorch.

The LM head: Hugging Face configs written before transformers 5 say ``tie_word_embeddings``;
transformers 5 always writes ``tie_word_embeddings: true`` and records the v1.0 output scaling as
``scale_decoder_outputs``, dropping ``lm_head.weight`` when it equals the embedding. Either way,
a scaled head is our tied v1.0 head; an unscaled one is our untied ``lm_head`` (initialised from
``lm_head.weight``, or from the embedding when the file has none).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import jax
import numpy as np
from absl import logging

from codeit_jax.policy.t5 import T5Config, init_params

CONFIG_FILE = "config.json"
SAFETENSORS_FILE = "model.safetensors"
SAFETENSORS_INDEX_FILE = "model.safetensors.index.json"
TORCH_FILE = "pytorch_model.bin"

#: Hugging Face tensors that are copies of ``shared.weight`` and carry no information.
_REDUNDANT = ("encoder.embed_tokens.weight", "decoder.embed_tokens.weight")

ParamPath = tuple[str, ...]


# --------------------------------------------------------------------------- names


def _attention_names(hf_prefix: str, ours: ParamPath) -> dict[str, tuple[ParamPath, bool]]:
    return {f"{hf_prefix}.{p}.weight": ((*ours, p, "kernel"), True) for p in "qkvo"}


def _mlp_names(config: T5Config, hf_prefix: str, ours: ParamPath) -> dict:
    inputs = ("wi_0", "wi_1") if config.gated else ("wi",)
    return {
        f"{hf_prefix}.{name}.weight": ((*ours, name, "kernel"), True) for name in (*inputs, "wo")
    }


def hf_name_map(config: T5Config) -> dict[str, tuple[ParamPath, bool]]:
    """Hugging Face tensor name -> (our parameter path, whether the matrix is transposed).

    torch ``Linear`` stores [out, in]; Flax ``Dense`` kernels are [in, out]. Embeddings and the
    relative-bias tables have the same layout in both.
    """
    names: dict[str, tuple[ParamPath, bool]] = {
        "shared.weight": (("shared", "embedding"), False),
        "encoder.final_layer_norm.weight": (("encoder", "final_norm", "scale"), False),
        "decoder.final_layer_norm.weight": (("decoder", "final_norm", "scale"), False),
    }
    for stack in ("encoder", "decoder"):
        hf_bias = f"{stack}.block.0.layer.0.SelfAttention.relative_attention_bias.weight"
        names[hf_bias] = ((stack, "relative_position_bias", "embedding"), False)
    for i in range(config.num_layers):
        block, ours = f"encoder.block.{i}", ("encoder", f"layers_{i}")
        names.update(_attention_names(f"{block}.layer.0.SelfAttention", (*ours, "attention")))
        names[f"{block}.layer.0.layer_norm.weight"] = ((*ours, "attention_norm", "scale"), False)
        names.update(_mlp_names(config, f"{block}.layer.1.DenseReluDense", (*ours, "mlp")))
        names[f"{block}.layer.1.layer_norm.weight"] = ((*ours, "mlp_norm", "scale"), False)
    for i in range(config.num_decoder_layers):
        block, ours = f"decoder.block.{i}", ("decoder", f"layers_{i}")
        names.update(_attention_names(f"{block}.layer.0.SelfAttention", (*ours, "self_attention")))
        names[f"{block}.layer.0.layer_norm.weight"] = (
            (*ours, "self_attention_norm", "scale"),
            False,
        )
        names.update(
            _attention_names(f"{block}.layer.1.EncDecAttention", (*ours, "cross_attention"))
        )
        names[f"{block}.layer.1.layer_norm.weight"] = (
            (*ours, "cross_attention_norm", "scale"),
            False,
        )
        names.update(_mlp_names(config, f"{block}.layer.2.DenseReluDense", (*ours, "mlp")))
        names[f"{block}.layer.2.layer_norm.weight"] = ((*ours, "mlp_norm", "scale"), False)
    if not config.tie_word_embeddings:
        names["lm_head.weight"] = (("lm_head", "kernel"), True)
    return names


# --------------------------------------------------------------------------- configs


def config_from_hf(hf: Mapping) -> T5Config:
    """Our ``T5Config`` from a Hugging Face ``config.json`` dict."""
    model_type = hf.get("model_type", "t5")
    if model_type != "t5":
        raise ValueError(f"expected a T5 checkpoint (model_type 't5'), got {model_type!r}")
    proj = hf.get("feed_forward_proj", "relu")
    if proj not in ("relu", "gated-gelu"):
        raise ValueError(f"unsupported feed_forward_proj {proj!r} (supported: relu, gated-gelu)")
    scaled_head = hf.get("scale_decoder_outputs", hf.get("tie_word_embeddings", True))
    eos = hf.get("eos_token_id", 1)
    pad = hf.get("pad_token_id", 0)
    start = hf.get("decoder_start_token_id")
    num_layers = hf.get("num_layers", 6)
    return T5Config(
        vocab_size=hf["vocab_size"],
        d_model=hf["d_model"],
        d_kv=hf["d_kv"],
        d_ff=hf["d_ff"],
        num_layers=num_layers,
        num_decoder_layers=hf.get("num_decoder_layers") or num_layers,
        num_heads=hf["num_heads"],
        relative_attention_num_buckets=hf.get("relative_attention_num_buckets", 32),
        relative_attention_max_distance=hf.get("relative_attention_max_distance", 128),
        dropout_rate=hf.get("dropout_rate", 0.1),
        layer_norm_epsilon=hf.get("layer_norm_epsilon", 1e-6),
        feed_forward_proj=proj,
        tie_word_embeddings=bool(scaled_head),
        pad_token_id=pad,
        eos_token_id=eos[0] if isinstance(eos, list) else eos,
        decoder_start_token_id=pad if start is None else start,
    )


def config_to_hf(config: T5Config) -> dict:
    """A Hugging Face ``config.json`` dict for ``config`` (loadable by transformers 4 and 5)."""
    return {
        "architectures": ["T5ForConditionalGeneration"],
        "model_type": "t5",
        "is_encoder_decoder": True,
        "vocab_size": config.vocab_size,
        "d_model": config.d_model,
        "d_kv": config.d_kv,
        "d_ff": config.d_ff,
        "num_layers": config.num_layers,
        "num_decoder_layers": config.num_decoder_layers,
        "num_heads": config.num_heads,
        "relative_attention_num_buckets": config.relative_attention_num_buckets,
        "relative_attention_max_distance": config.relative_attention_max_distance,
        "dropout_rate": config.dropout_rate,
        "layer_norm_epsilon": config.layer_norm_epsilon,
        "feed_forward_proj": config.feed_forward_proj,
        "tie_word_embeddings": config.tie_word_embeddings,
        "pad_token_id": config.pad_token_id,
        "eos_token_id": config.eos_token_id,
        "decoder_start_token_id": config.decoder_start_token_id,
        "initializer_factor": 1.0,
        "use_cache": True,
        "dtype": "float32",
    }


# --------------------------------------------------------------------------- tensors


def _read_safetensors(file: Path) -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file

    try:
        return load_file(str(file))
    except TypeError as error:  # numpy has no bfloat16: go through torch when it is there
        try:
            from safetensors.torch import load_file as load_torch
        except ImportError:
            raise ValueError(
                f"{file}: tensors of a dtype numpy cannot read ({error}); "
                "install torch to read it, or save the checkpoint in float32"
            ) from error
        return {k: v.float().numpy() for k, v in load_torch(str(file)).items()}


def _read_torch(file: Path) -> dict[str, np.ndarray]:
    try:
        import torch
    except ImportError as error:
        raise ImportError(
            f"{file} is a PyTorch checkpoint and reading it needs torch "
            "(pip install torch, the CPU wheel is enough), or convert it to model.safetensors"
        ) from error
    state = torch.load(str(file), map_location="cpu", weights_only=True)
    return {k: v.detach().float().numpy() for k, v in state.items()}


def read_hf_tensors(directory: Path) -> dict[str, np.ndarray]:
    """Every tensor of the checkpoint in ``directory``, as float32 numpy arrays."""
    if (directory / SAFETENSORS_FILE).is_file():
        tensors = _read_safetensors(directory / SAFETENSORS_FILE)
    elif (directory / SAFETENSORS_INDEX_FILE).is_file():
        index = json.loads((directory / SAFETENSORS_INDEX_FILE).read_text())
        tensors = {}
        for shard in sorted(set(index["weight_map"].values())):
            tensors.update(_read_safetensors(directory / shard))
    elif (directory / TORCH_FILE).is_file():
        tensors = _read_torch(directory / TORCH_FILE)
    else:
        raise FileNotFoundError(
            f"no model weights in {directory}: expected {SAFETENSORS_FILE}, "
            f"{SAFETENSORS_INDEX_FILE} or {TORCH_FILE}"
        )
    return {k: np.asarray(v, dtype=np.float32) for k, v in tensors.items()}


def _expected_shapes(config: T5Config) -> dict[ParamPath, tuple[int, ...]]:
    shapes = jax.eval_shape(lambda key: init_params(config, key), jax.random.key(0))
    flat = jax.tree_util.tree_flatten_with_path(shapes)[0]
    return {tuple(k.key for k in path): tuple(leaf.shape) for path, leaf in flat}


def _nest(flat: Mapping[ParamPath, np.ndarray]) -> dict:
    tree: dict = {}
    for path, value in flat.items():
        node = tree
        for key in path[:-1]:
            node = node.setdefault(key, {})
        node[path[-1]] = value
    return tree


def params_from_hf_tensors(config: T5Config, tensors: Mapping[str, np.ndarray]) -> dict:
    """Our parameter tree (float32 numpy) from Hugging Face tensors; errors name bad tensors."""
    tensors = dict(tensors)
    if not config.tie_word_embeddings and "lm_head.weight" not in tensors:
        tensors["lm_head.weight"] = tensors.get("shared.weight")  # transformers 5: tied copy
    names = hf_name_map(config)
    missing = sorted(name for name in names if tensors.get(name) is None)
    if missing:
        raise ValueError(f"checkpoint lacks {len(missing)} tensors, e.g. {missing[:5]}")
    unexpected = sorted(set(tensors) - set(names) - set(_REDUNDANT))
    if unexpected:
        logging.warning("ignoring %d unexpected tensors, e.g. %s", len(unexpected), unexpected[:5])
    shapes = _expected_shapes(config)
    flat = {}
    for hf_name, (path, transposed) in names.items():
        value = tensors[hf_name].T if transposed else tensors[hf_name]
        if value.shape != shapes[path]:
            raise ValueError(
                f"tensor {hf_name} has shape {tensors[hf_name].shape}; the config implies "
                f"{shapes[path][::-1] if transposed else shapes[path]}"
            )
        flat[path] = np.ascontiguousarray(value, dtype=np.float32)
    return _nest(flat)


# --------------------------------------------------------------------------- public API


def load_hf_checkpoint(path: str | Path) -> tuple[T5Config, dict]:
    """(config, float32 numpy params) from a local Hugging Face T5 checkpoint directory."""
    directory = Path(path)
    if not directory.is_dir():
        raise FileNotFoundError(f"checkpoint directory {directory} does not exist")
    if not (directory / CONFIG_FILE).is_file():
        raise FileNotFoundError(f"{directory} has no {CONFIG_FILE}")
    config = config_from_hf(json.loads((directory / CONFIG_FILE).read_text()))
    return config, params_from_hf_tensors(config, read_hf_tensors(directory))


def hf_tensors_from_params(config: T5Config, params: Mapping) -> dict[str, np.ndarray]:
    """Hugging Face tensor name -> contiguous float32 array, for ``params`` of ``config``."""
    shapes = _expected_shapes(config)
    tensors = {}
    for hf_name, (path, transposed) in hf_name_map(config).items():
        node = params
        try:
            for key in path:
                node = node[key]
        except KeyError as error:
            raise ValueError(f"params lack {'/'.join(path)} (for {hf_name})") from error
        value = np.asarray(jax.device_get(node), dtype=np.float32)
        if value.shape != shapes[path]:
            raise ValueError(f"{'/'.join(path)} has shape {value.shape}, expected {shapes[path]}")
        tensors[hf_name] = np.ascontiguousarray(value.T if transposed else value)
    return tensors


def save_hf_checkpoint(config: T5Config, params: Mapping, path: str | Path) -> Path:
    """Write ``config.json`` + ``model.safetensors`` to ``path`` (created if needed)."""
    from safetensors.numpy import save_file

    directory = Path(path)
    directory.mkdir(parents=True, exist_ok=True)
    tensors = hf_tensors_from_params(config, params)
    save_file(tensors, str(directory / SAFETENSORS_FILE), metadata={"format": "pt"})
    (directory / CONFIG_FILE).write_text(json.dumps(config_to_hf(config), indent=2) + "\n")
    return directory
