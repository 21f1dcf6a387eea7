"""The CodeIt experiment config: ablations applied in one place, every field checked up front,
then one typed, frozen `RunConfig` for the run.

A run may take hours before it reaches a stage whose setting is wrong, so `prepare_config`
rejects a bad config before anything is loaded or compiled, with a message naming the field.
Ablations are config overrides, never branches scattered across modules: `ABLATIONS`
(``ablations.py``) maps each name to the concrete settings it changes, and the loop only ever
reads those settings. `FIELDS` (``fields.py``) says what every field accepts and means.

The ConfigDict stays at the edge (main, this module, the jobs). `prepare_run_config` builds
the `RunConfig` once, with the data directory resolved once, and every stage below receives
the typed section it needs (`TrainConfig`, `SamplingConfig`, `BufferConfig`, ...): no module
below the jobs indexes a ConfigDict, and none can change the settings of a running run.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ml_collections import ConfigDict

from codeit_jax import schema
from codeit_jax.config.ablations import apply_ablation
from codeit_jax.config.fields import FIELDS
from codeit_jax.errors import ConfigError
from codeit_jax.execution.sandbox import SandboxConfig
from codeit_jax.files import resolve_data_dir, resolve_data_path
from codeit_jax.policy.sampler import SamplingConfig
from codeit_jax.policy.t5 import CONFIGS
from codeit_jax.policy.trainer import TrainConfig
from codeit_jax.replay.buffer import BufferConfig
from codeit_jax.replay.experience import EncodingConfig
from codeit_jax.replay.mutated_tasks import (
    NoExitConfig,
    first_missing_search_file,
    search_samples,
)
from codeit_jax.replay.paper_metric import (
    AUTO_SAMPLES,
    MetricConfig,
    default_mutation_samples,
    missing_file_message,
)
from codeit_jax.tasks import SPLIT_KEYS_FILE


def split_paths(text: str) -> list[Path]:
    """A comma-separated list of paths (empty text: none)."""
    return [Path(p.strip()).expanduser() for p in str(text).split(",") if p.strip()]


def prepare_config(config: ConfigDict) -> ConfigDict:
    """An unlocked copy of ``config`` with its ablation applied and every field checked.

    Derived fields: ``add_policy_experience``, ``relabel``, ``model.load_weights``,
    ``data.seeds`` resolved to "codeit" or "random", ``data.eval_tasks`` to "codeit" or
    "arc1", and ``{data_dir}`` in ``data.mutated_files``, ``no_exit.search_dir`` and
    ``metric.mutation_solutions`` replaced by the data directory. The run itself reads the
    typed `RunConfig` of `prepare_run_config`, never this ConfigDict.
    """
    return _prepare(config)[0]


def _prepare(config: ConfigDict) -> tuple[ConfigDict, Path]:
    """`prepare_config` and the data directory, resolved once."""
    if config.get("experiment") != "codeit":
        raise ConfigError(f"config.experiment is {config.get('experiment')!r}, not 'codeit'")
    schema.check_fields(config, FIELDS)
    c = apply_ablation(config)
    return c, _check(c)


def _check(c: ConfigDict) -> Path:
    """What the field table cannot say: settings that must agree, and files that must exist."""
    if c.train.batch_size % c.train.grad_accum_steps:
        raise ConfigError(
            f"config.train.batch_size {c.train.batch_size} is not a multiple of "
            f"config.train.grad_accum_steps {c.train.grad_accum_steps}"
        )
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
    if c.sampling.constrained and c.sampling.disallowed_tokens == "end":
        raise ConfigError('config.sampling.constrained needs sampling.disallowed_tokens="mask"')
    root = resolve_data_dir(c.data.get("data_dir"))  # the one resolution of the data directory
    _check_data(c, root)
    _check_metric(c, root)
    _check_model(c)
    if not c.add_policy_experience:
        _check_search_files(c)
    return root


def _check_data(c: ConfigDict, root: Path) -> None:
    seeds, evals = c.data.seeds, c.data.eval_tasks
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


def _check_metric(c: ConfigDict, root: Path) -> None:
    """The paper figure's mutation solutions file ({data_dir} resolved; it must exist) and its
    sample count (`AUTO_SAMPLES` resolved); see `codeit_jax.replay.paper_metric`."""
    path = resolve_data_path(c.metric.mutation_solutions, root)
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


# --------------------------------------------------------------------------- the typed config


@dataclass(frozen=True)
class DataConfig:
    """``config.data``, resolved: the data directory, seed and inference sources."""

    data_dir: Path  # resolved once (`codeit_jax.files.resolve_data_dir`)
    seeds: str  # "codeit" or "random"
    n_random_seeds: int
    mutated_files: tuple[Path, ...]  # {data_dir} replaced
    max_mutated_tasks: int
    eval_tasks: str  # "codeit", "arc1", "arc2" or "validation"
    n_eval_tasks: int

    @property
    def training(self) -> Path:
        """The CodeIt training tasks with their programs (may be missing: random seeds)."""
        return self.data_dir / "training"


@dataclass(frozen=True)
class ModelConfig:
    """``config.model``: which T5 the policy is and where its weights come from."""

    name: str  # a named shape (`codeit_jax.policy.t5.CONFIGS`) when init_from is empty
    init_from: str  # a Hugging Face checkpoint directory, as given
    dtype: str  # "" picks float32 on CPU and bfloat16 elsewhere
    dropout_rate: float
    load_weights: bool  # False (A4): init_from's shape and tokenizer, fresh weights


@dataclass(frozen=True)
class RunConfig:
    """Everything a CodeIt run reads, checked and typed once at start-up."""

    seed: int
    n_meta_iterations: int
    ablation: str
    add_policy_experience: bool  # False: A1
    relabel: bool  # False: A2
    data: DataConfig
    model: ModelConfig
    encoding: EncodingConfig
    train: TrainConfig
    sampling: SamplingConfig
    buffer: BufferConfig
    sandbox: SandboxConfig
    no_exit: NoExitConfig
    metric: MetricConfig
    checkpoint_max_to_keep: int
    tensorboard: bool
    progress: bool
    distributed: bool
    #: `run_identity` as JSON: what a checkpoint must share with the run that resumes it.
    identity: str


def prepare_run_config(config: ConfigDict) -> RunConfig:
    """The typed run config of ``config``: `prepare_config`'s checks, then the sections."""
    c, root = _prepare(config)
    d, m, t, s = c.data, c.model, c.train, c.sampling
    buffer = c.buffer.to_dict()
    buffer["capacity"] = buffer["capacity"] or None  # 0: unbounded
    return RunConfig(
        seed=c.seed,
        n_meta_iterations=c.n_meta_iterations,
        ablation=c.ablation,
        add_policy_experience=c.add_policy_experience,
        relabel=c.relabel,
        data=DataConfig(
            data_dir=root,
            seeds=d.seeds,
            n_random_seeds=d.n_random_seeds,
            mutated_files=tuple(split_paths(d.mutated_files)),
            max_mutated_tasks=d.max_mutated_tasks,
            eval_tasks=d.eval_tasks,
            n_eval_tasks=d.n_eval_tasks,
        ),
        model=ModelConfig(m.name, m.init_from, m.dtype, float(m.dropout_rate), m.load_weights),
        encoding=EncodingConfig(
            c.encoding.n_examples, c.encoding.input_state_max, c.encoding.max_program_tokens
        ),
        train=TrainConfig(
            learning_rate=t.learning_rate,
            weight_decay=t.weight_decay,
            warmup_steps=t.warmup_steps,
            max_grad_norm=t.max_grad_norm,
            weight_decay_on=t.weight_decay_on,
            loss_on_padding=t.loss_on_padding,
            batch_size=t.batch_size,
            grad_accum_steps=t.grad_accum_steps,
            dropout=float(m.dropout_rate) > 0,
            seed=c.seed,
            n_policy=t.n_policy,
            n_mutated=t.n_mutated,
            epochs=t.epochs,
            first_epochs=t.first_epochs,
            reset_optimizer=t.reset_optimizer,
            input_buckets=tuple(t.input_buckets),
            label_buckets=tuple(t.label_buckets),
        ),
        sampling=SamplingConfig(
            n_samples=s.n_samples,
            temperature=float(s.temperature),
            tasks_per_batch=s.tasks_per_batch,
            max_new_tokens=s.max_new_tokens,
            top_k=s.top_k,
            end_on_disallowed=s.disallowed_tokens == "end",
            constrained=s.constrained,
        ),
        buffer=BufferConfig.from_mapping(buffer),
        sandbox=SandboxConfig.of(c.sandbox),
        no_exit=NoExitConfig(c.no_exit.search_dir, c.no_exit.start_samples, c.no_exit.interval),
        metric=MetricConfig(c.metric.mutation_solutions, c.metric.mutation_samples),
        checkpoint_max_to_keep=c.checkpoint_max_to_keep,
        tensorboard=c.tensorboard,
        progress=c.progress,
        distributed=c.distributed,
        identity=json.dumps(run_identity(c)),
    )


def run_identity(config: ConfigDict) -> dict[str, Any]:
    """The settings a resumed run must share with the run that wrote the checkpoint (of a
    prepared config; stored in every checkpoint, so its keys and values must not change).

    ``n_meta_iterations`` is left out on purpose (a larger value continues the run), as are
    settings that only change speed or output (workers, progress bars, batch per sampler call).
    """
    return {
        "seed": config.seed,
        "ablation": config.ablation,
        "model": {k: config.model[k] for k in ("name", "init_from", "load_weights")},
        "data": {k: config.data[k] for k in ("seeds", "mutated_files", "eval_tasks")},
        "n_eval_tasks": config.data.n_eval_tasks,
        "encoding": config.encoding.to_dict(),
        "n_samples": config.sampling.n_samples,
        "buffer": config.buffer.to_dict(),  # the restored buffer keeps the settings it had
        "no_exit": config.no_exit.to_dict(),
    }
