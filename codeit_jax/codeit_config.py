"""The CodeIt experiment config: ablations applied in one place, every field checked up front.

A run may take hours before it reaches a stage whose setting is wrong, so `prepare_config`
rejects a bad config before anything is loaded or compiled, with a message naming the field.
Ablations are config overrides, never branches scattered across modules: `ABLATIONS` maps each
name to the concrete settings it changes, and the loop only ever reads those settings.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

from ml_collections import ConfigDict

from codeit_jax.errors import ConfigError
from codeit_jax.model.t5 import CONFIGS
from codeit_jax.mutated_tasks import first_missing_search_file, search_samples
from codeit_jax.paper_metric import AUTO_SAMPLES, default_mutation_samples, missing_file_message
from codeit_jax.paths import codeit_data_dir, resolve_data_path
from codeit_jax.trainer import WEIGHT_DECAY_ON

__all__ = ["ConfigError"]


def _no_exit(c: ConfigDict) -> None:
    """A1: the policy's samples are not added; the mutation baseline's search tasks arrive
    before each meta-iteration's training instead (``no_exit``)."""
    c.add_policy_experience = False


def _no_relabelling(c: ConfigDict) -> None:
    """A2: only programs that solve their real task go into the buffer."""
    c.relabel = False


def _no_prioritization(c: ConfigDict) -> None:
    """A3: every priority weight zero, so the buffer samples uniformly."""
    for name in ("performance_penalty", "length_penalty", "age_penalty", "distance_penalty"):
        c.buffer[name] = 0.0
    c.buffer.priority_in_mutated = False


def _no_pretraining(c: ConfigDict) -> None:
    """A4: the checkpoint's shape and tokenizer, but freshly initialised weights."""
    c.model.load_weights = False


def _one_example(c: ConfigDict) -> None:
    """A5: the model sees one demonstration example per task."""
    c.encoding.n_examples = 1


def _no_mutated(c: ConfigDict) -> None:
    """A6: the buffer starts with the training tasks only (and the paper scores it without
    mutation solutions or their samples)."""
    c.data.mutated_files = ""
    if "metric" in c:
        c.metric.mutation_solutions, c.metric.mutation_samples = "", 0


#: Ablation name -> how it changes the (unlocked copy of the) config.
ABLATIONS: dict[str, Callable[[ConfigDict], None] | None] = {
    "none": None,
    "a1_no_exit": _no_exit,
    "a2_no_relabelling": _no_relabelling,
    "a3_no_prioritization": _no_prioritization,
    "a4_no_pretraining": _no_pretraining,
    "a5_one_example": _one_example,
    "a6_no_mutated": _no_mutated,
}

SEED_SOURCES = ("auto", "codeit", "random")
#: config.sampling.disallowed_tokens: "mask" never samples them, "end" ends the sample after one.
DISALLOWED_TOKENS = ("mask", "end")
#: config.data.eval_tasks: "validation" is CodeIt's development setting (final_experiments:
#: False): inference on the split_keys.json "val" training tasks, seeds from the "train" ones.
EVAL_SOURCES = ("auto", "codeit", "arc1", "validation")
SPLIT_KEYS_FILE = "split_keys.json"
#: Stands for the data directory in ``data.mutated_files`` and ``no_exit.search_dir``.


def split_paths(text: str) -> list[Path]:
    """A comma-separated list of paths (empty text: none)."""
    return [Path(p.strip()).expanduser() for p in str(text).split(",") if p.strip()]


def data_dir(config: ConfigDict) -> Path:
    """The CodeIt data directory the config names, or the default one."""
    given = config.data.get("data_dir")
    return Path(given).expanduser() if given else codeit_data_dir()


def prepare_config(config: ConfigDict) -> ConfigDict:
    """An unlocked copy of ``config`` with its ablation applied and every field checked.

    Derived fields the loop reads: ``add_policy_experience``, ``relabel``,
    ``model.load_weights``, ``data.seeds`` resolved to "codeit" or "random",
    ``data.eval_tasks`` to "codeit" or "arc1", and ``{data_dir}`` in ``data.mutated_files``
    and ``no_exit.search_dir`` replaced by the data directory.
    """
    if config.get("experiment") != "codeit":
        raise ConfigError(f"config.experiment is {config.get('experiment')!r}, not 'codeit'")
    c = ConfigDict(config.to_dict())
    c.add_policy_experience = True
    c.relabel = True
    c.model.load_weights = True
    ablation = c.get("ablation", "none")
    if ablation not in ABLATIONS:
        raise ConfigError(f"config.ablation is {ablation!r}; expected one of {list(ABLATIONS)}")
    change = ABLATIONS[ablation]
    if change is not None:
        change(c)
    _check(c)
    return c


def _positive_int(c: ConfigDict, dotted: str, minimum: int = 1) -> None:
    value = _get(c, dotted)
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ConfigError(f"config.{dotted} must be an integer >= {minimum}, got {value!r}")


def _number(c: ConfigDict, dotted: str, low: float, high: float, *, open_low=False) -> None:
    value = _get(c, dotted)
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    ok = ok and (value > low if open_low else value >= low) and value <= high
    if not ok:
        bracket = "(" if open_low else "["
        raise ConfigError(f"config.{dotted} must be in {bracket}{low}, {high}], got {value!r}")


def _one_of(c: ConfigDict, dotted: str, choices: tuple[str, ...]) -> None:
    value = _get(c, dotted)
    if value not in choices:
        raise ConfigError(f"config.{dotted} is {value!r}; expected one of {list(choices)}")


def _boolean(c: ConfigDict, dotted: str) -> None:
    value = _get(c, dotted)
    if not isinstance(value, bool):
        raise ConfigError(f"config.{dotted} must be True or False, got {value!r}")


def _get(c: ConfigDict, dotted: str):
    node = c
    for part in dotted.split("."):
        if part not in node:
            raise ConfigError(f"config.{dotted} is missing")
        node = node[part]
    return node


def _check_buckets(c: ConfigDict, dotted: str) -> None:
    buckets = _get(c, dotted)
    if (
        not isinstance(buckets, (tuple, list))
        or not buckets
        or any(not isinstance(b, int) or b < 1 for b in buckets)
        or list(buckets) != sorted(set(buckets))
    ):
        raise ConfigError(f"config.{dotted} must be increasing positive lengths, got {buckets!r}")


def _check(c: ConfigDict) -> None:
    _positive_int(c, "n_meta_iterations")
    _positive_int(c, "seed", minimum=0)
    for name in ("n_examples", "max_program_tokens"):
        _positive_int(c, f"encoding.{name}")
    _positive_int(c, "encoding.input_state_max", minimum=2)
    for name in ("n_policy", "n_mutated"):
        _positive_int(c, f"train.{name}", minimum=0)
    for name in ("epochs", "batch_size", "grad_accum_steps"):
        _positive_int(c, f"train.{name}")
    _positive_int(c, "train.first_epochs", minimum=0)
    _positive_int(c, "train.warmup_steps", minimum=0)
    _number(c, "train.learning_rate", 0.0, 1.0, open_low=True)
    _number(c, "train.weight_decay", 0.0, 1.0)
    if c.train.max_grad_norm is not None:
        _number(c, "train.max_grad_norm", 0.0, math.inf)
    _one_of(c, "train.weight_decay_on", WEIGHT_DECAY_ON)
    for name in ("reset_optimizer", "loss_on_padding"):
        _boolean(c, f"train.{name}")
    _check_buckets(c, "train.input_buckets")
    _check_buckets(c, "train.label_buckets")
    if c.train.input_buckets[-1] < 2 * c.encoding.input_state_max:
        raise ConfigError(
            f"config.train.input_buckets end at {c.train.input_buckets[-1]}, below the "
            f"{2 * c.encoding.input_state_max} tokens an input of encoding.input_state_max="
            f"{c.encoding.input_state_max} per side can have"
        )
    if c.train.label_buckets[-1] < c.encoding.max_program_tokens:
        raise ConfigError(
            f"config.train.label_buckets end at {c.train.label_buckets[-1]}, below "
            f"encoding.max_program_tokens={c.encoding.max_program_tokens}"
        )
    for name in ("n_samples", "tasks_per_batch", "max_new_tokens"):
        _positive_int(c, f"sampling.{name}")
    _number(c, "sampling.temperature", 0.0, math.inf)
    _positive_int(c, "sampling.top_k", minimum=0)
    _one_of(c, "sampling.disallowed_tokens", DISALLOWED_TOKENS)
    _boolean(c, "sampling.constrained")
    if c.sampling.constrained and c.sampling.disallowed_tokens == "end":
        raise ConfigError('config.sampling.constrained needs sampling.disallowed_tokens="mask"')
    _positive_int(c, "buffer.capacity", minimum=0)
    _positive_int(c, "sandbox.workers", minimum=0)
    _number(c, "sandbox.timeout_s", 0.0, math.inf, open_low=True)
    _positive_int(c, "checkpoint_max_to_keep")
    _positive_int(c, "no_exit.start_samples", minimum=0)
    _positive_int(c, "no_exit.interval")
    _positive_int(c, "data.n_eval_tasks", minimum=0)
    _positive_int(c, "data.max_mutated_tasks", minimum=0)
    _positive_int(c, "data.n_random_seeds", minimum=0)
    _number(c, "model.dropout_rate", 0.0, 1.0)
    if c.model.dropout_rate >= 1.0:
        raise ConfigError("config.model.dropout_rate must be below 1")
    _check_data(c)
    _check_metric(c)
    _check_model(c)
    if not c.add_policy_experience:
        _check_search_files(c)


def _check_data(c: ConfigDict) -> None:
    seeds, evals = c.data.seeds, c.data.eval_tasks
    if seeds not in SEED_SOURCES:
        raise ConfigError(f"config.data.seeds is {seeds!r}; expected one of {SEED_SOURCES}")
    if evals not in EVAL_SOURCES:
        raise ConfigError(f"config.data.eval_tasks is {evals!r}; expected one of {EVAL_SOURCES}")
    root = data_dir(c)
    if c.data.get("data_dir") and not root.is_dir():
        raise ConfigError(f"config.data.data_dir {root} is not a directory")
    has_training = (root / "training").is_dir()
    has_eval = (root / "evaluation").is_dir()
    if seeds == "auto":
        c.data.seeds = "codeit" if has_training else "random"
    elif seeds == "codeit" and not has_training:
        raise ConfigError(
            f"config.data.seeds='codeit' but {root / 'training'} does not exist: set "
            "config.data.data_dir (data/fetch_codeit_data.sh fetches it) or use seeds='random'"
        )
    if c.data.seeds == "random" and c.data.n_random_seeds < 1:
        raise ConfigError("random seeding needs config.data.n_random_seeds >= 1")
    if evals == "auto":
        c.data.eval_tasks = "codeit" if has_eval else "arc1"
    elif evals == "codeit" and not has_eval:
        raise ConfigError(f"config.data.eval_tasks='codeit' but {root / 'evaluation'} is missing")
    elif evals == "validation":
        for needed in (root / "training", root / SPLIT_KEYS_FILE):
            if not needed.exists():
                raise ConfigError(
                    f"config.data.eval_tasks='validation' needs {needed} (the CodeIt data: "
                    "bash data/fetch_codeit_data.sh)"
                )
    c.data.mutated_files = ",".join(
        resolve_data_path(str(path), root) for path in split_paths(c.data.mutated_files)
    )
    c.no_exit.search_dir = resolve_data_path(c.no_exit.search_dir, root)
    for path in split_paths(c.data.mutated_files):
        if not path.is_file():
            raise ConfigError(
                f"config.data.mutated_files: {path} is not a file. Fetch the official mutated "
                f"tasks with `bash data/fetch_codeit_data.sh {path.parent}`, or run without "
                "mutated tasks: ablation A6 (configs/a6_no_mutated.py) or "
                "--config.data.mutated_files="
            )


def _check_search_files(c: ConfigDict) -> None:
    """A1 needs one search file per meta-iteration; name the first one missing."""
    n = c.no_exit
    missing = first_missing_search_file(
        n.search_dir, n.start_samples, n.interval, c.n_meta_iterations
    )
    if missing is not None:
        i, path = missing
        last = search_samples(n.start_samples, n.interval, c.n_meta_iterations - 1)
        raise ConfigError(
            f"config.no_exit.search_dir: {path} (meta-iteration {i}) is not a file. Ablation "
            "a1_no_exit adds mutated_tasks_search_<n>.json with n = no_exit.start_samples + "
            "i * no_exit.interval before meta-iteration i's training: run the mutation baseline "
            f"(configs/mutation.py) with --config.n_samples={last} and "
            f"--config.save_chunk_size={n.interval} into no_exit.search_dir"
        )


def _check_metric(c: ConfigDict) -> None:
    """The paper figure's mutation solutions file ({data_dir} resolved; it must exist) and its
    sample count (`AUTO_SAMPLES` resolved); see `codeit_jax.paper_metric`."""
    given = _get(c, "metric.mutation_solutions")
    if not isinstance(given, str):
        raise ConfigError(f"config.metric.mutation_solutions must be a path or '', got {given!r}")
    _positive_int(c, "metric.mutation_samples", minimum=AUTO_SAMPLES)
    path = resolve_data_path(given, data_dir(c))
    if path and not Path(path).is_file():
        raise ConfigError(missing_file_message(path))
    c.metric.mutation_solutions = path
    if c.metric.mutation_samples == AUTO_SAMPLES:
        c.metric.mutation_samples = default_mutation_samples(path)


def _check_model(c: ConfigDict) -> None:
    if c.model.init_from:
        path = Path(c.model.init_from).expanduser()
        if not (path / "config.json").is_file():
            raise ConfigError(
                f"config.model.init_from {path} is not a Hugging Face checkpoint directory "
                "(no config.json)"
            )
    elif c.model.name not in CONFIGS:
        raise ConfigError(f"config.model.name is {c.model.name!r}; known: {sorted(CONFIGS)}")
    if c.model.dtype not in ("", "float32", "bfloat16", "float16"):
        raise ConfigError(f"config.model.dtype is {c.model.dtype!r}; use float32 or bfloat16")
