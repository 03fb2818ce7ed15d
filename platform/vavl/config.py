"""Typed experiment configuration: YAML recipes, `--set key=value` overrides, strict validation.

Every section rejects unknown keys, so a typo in a recipe fails before any work starts with the
dotted path of the offending field and what is allowed there.
"""

from __future__ import annotations

import datetime
import types
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

CREMA_D_CLASSES = ["angry", "sad", "disgust", "fear", "neutral", "happy"]
MSP_IMPROV_ATTRIBUTES = ["arousal", "valence", "dominance"]
# What a model answers from: fusion head on paired rows, or one modality's head.
CONDITIONS = ("av", "audio", "visual")
# Not a condition but the mean of a metric over the conditions a split has rows of
# (`{split}/mean/{metric}`): a selection metric that weighs every head the model answers with.
MEAN_OF_CONDITIONS = "mean"


class ConfigError(ValueError):
    """A recipe or override that does not describe a valid experiment."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=False)


# Sizes a `model.preset` fills in where the config does not give them. paper: the layer counts
# and widths of the paper's public code (github.com/ilucasgoncalves/VAVL: VAVL/net/avmodel.py
# builds each branch as Conformer(encoder_dim=512, num_encoder_layers=3) and the shared part as
# one Conformer(num_encoder_layers=2); VAVL/conformer/model.py defaults to 8 heads, feed-forward
# expansion 4, kernel 31, dropout 0.1; its heads are Linear(512, 512) -> ReLU -> Linear(512,
# 256) -> Linear(256, K), i.e. 512 hidden units before the one nonlinearity). Where our network
# differs from that code (no 50-d input bottleneck, no extra Linear at the shared input, no
# relative positional attention, LayerNorm for BatchNorm): `vavl.model.vavl`.
MODEL_PRESETS: dict[str, dict[str, int]] = {
    "default": {},  # the field defaults: 2 blocks per branch, 1 shared, 256-unit heads
    "paper": {
        "d_model": 512,
        "n_heads": 8,
        "ff_mult": 4,
        "conv_kernel": 31,
        "branch_layers": 3,
        "shared_layers": 2,
        "head_hidden": 512,
    },
}


class ModelConfig(_Strict):
    """Network sizes. At train time `audio_dim`/`visual_dim` come from the store's manifest; a
    dim of 0 means the corpus has no such modality, and the model has no branch for it.
    `preset` fills the fields the config leaves out (MODEL_PRESETS); fields it gives win."""

    preset: Literal["default", "paper"] = Field(
        "default",
        description="named sizes filled in where the config gives none: default (the field "
        "defaults) or paper (the paper's code: 3 blocks per branch, 2 shared, 512-unit heads)",
    )
    audio_dim: int = Field(
        1024, ge=0, description="audio frame feature size (wav2vec2-large: 1024; 0: no audio)"
    )
    visual_dim: int = Field(
        1408, ge=0, description="visual frame feature size (EffNet-B2: 1408; 0: no visual)"
    )
    d_model: int = Field(512, gt=0, description="width of every conformer")
    n_heads: int = Field(8, gt=0)
    ff_mult: int = Field(4, gt=0, description="feed-forward hidden size = ff_mult * d_model")
    conv_kernel: int = Field(31, gt=0, description="depthwise convolution kernel (odd)")
    dropout: float = Field(0.1, ge=0.0, lt=1.0)
    branch_layers: int = Field(2, ge=1, description="conformer blocks in each modality branch")
    shared_layers: int = Field(
        1,
        ge=1,
        description="conformer blocks in the one encoder both modalities share; the weighted "
        "residual (loss.residual_weight) goes around all of them",
    )
    head_hidden: int = Field(256, gt=0, description="hidden size of prediction/fusion heads")
    activation_checkpointing: bool = Field(
        False,
        description="keep only each conformer block's input during training and recompute its "
        "activations in the backward pass: less memory per worker for one more forward of "
        "the blocks per step (bench/model.py --checkpointing measures both)",
    )

    @model_validator(mode="before")
    @classmethod
    def _fill_from_preset(cls, data: Any) -> Any:
        """The preset's sizes under the fields given (an unknown preset fails on the field)."""
        if isinstance(data, dict):
            sizes = MODEL_PRESETS.get(data.get("preset", "default"), {})
            data = {**sizes, **data}
        return data

    @model_validator(mode="after")
    def _check_shapes(self) -> ModelConfig:
        if not self.modalities:
            raise ValueError(
                "audio_dim and visual_dim are both 0: the model needs at least one modality"
            )
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model={self.d_model} must be divisible by n_heads={self.n_heads}")
        if self.conv_kernel % 2 == 0:
            raise ValueError(f"conv_kernel={self.conv_kernel} must be odd (same-length padding)")
        return self

    @property
    def modalities(self) -> tuple[str, ...]:
        """The modalities the model has a branch for: those with a dim > 0, audio first."""
        dims = (("audio", self.audio_dim), ("visual", self.visual_dim))
        return tuple(name for name, dim in dims if dim > 0)

    @property
    def conditions(self) -> tuple[str, ...]:
        """The conditions (CONDITIONS order) the model answers: av needs both branches."""
        found = self.modalities
        return tuple(c for c in CONDITIONS if c in found or (c == "av" and len(found) == 2))


class TaskConfig(_Strict):
    """What the heads predict: categorical emotions or emotional attributes."""

    kind: Literal["categorical", "attributes"] = "categorical"
    classes: list[str] = Field(default_factory=lambda: list(CREMA_D_CLASSES))
    labels: Literal["hard", "soft"] = "soft"
    class_weights: list[float] | None = None
    attributes: list[str] = Field(default_factory=lambda: list(MSP_IMPROV_ATTRIBUTES))
    attribute_weights: list[float] | None = None
    score_range: tuple[float, float] = (1.0, 5.0)

    @model_validator(mode="after")
    def _check_lists(self) -> TaskConfig:
        if self.kind == "categorical":
            if len(self.classes) < 2 or len(set(self.classes)) != len(self.classes):
                raise ValueError(f"classes must be >= 2 distinct names, got {self.classes}")
            if self.class_weights is not None and len(self.class_weights) != len(self.classes):
                raise ValueError(
                    f"class_weights has {len(self.class_weights)} values for "
                    f"{len(self.classes)} classes"
                )
        else:
            if not self.attributes or len(set(self.attributes)) != len(self.attributes):
                raise ValueError(f"attributes must be distinct names, got {self.attributes}")
            weights = self.attribute_weights
            if weights is not None and len(weights) != len(self.attributes):
                raise ValueError(
                    f"attribute_weights has {len(weights)} values for "
                    f"{len(self.attributes)} attributes"
                )
            low, high = self.score_range
            if not low < high:
                raise ValueError(
                    f"score_range must be (low, high) with low < high, got {low, high}"
                )
        return self

    @property
    def num_outputs(self) -> int:
        return len(self.classes) if self.kind == "categorical" else len(self.attributes)


class LossConfig(_Strict):
    """The mission's two tuned knobs."""

    residual_weight: float = Field(
        1.0, ge=0.0, description="scale of the shared encoder's input added back to its output"
    )
    reconstruction_weight: float = Field(
        2.0, ge=0.0, description="weight of the feature-mean reconstruction MSE in each branch loss"
    )


class OptimConfig(_Strict):
    """Adam settings of the paper's public code, plus our lr schedule, gradient clipping
    and weight averaging (the paper trains at a constant lr without clipping and evaluates its
    raw weights: `schedule: constant`, `warmup_epochs: 0`, `grad_clip: null`, `ema_epochs: null`
    restore that)."""

    lr: float = Field(5e-5, gt=0.0, description="peak lr, reached at the end of the warm-up")
    weight_decay: float = Field(5e-7, ge=0.0)
    betas: tuple[float, float] = (0.95, 0.999)
    epochs: int = Field(20, ge=1)
    batch_size: int = Field(32, ge=1)
    accumulate_batches: int = Field(
        1,
        ge=1,
        description="batches whose gradients make one optimizer step: the effective batch is "
        "batch_size x accumulate_batches per worker at the activation memory of batch_size (e.g. "
        "the paper's 32 as 8 x 4). Each batch's loss counts 1/k of a step of k batches; the "
        "epoch's last step takes the batches left. Warm-up, schedule and weight averaging count "
        "optimizer steps",
    )
    grad_clip: float | None = Field(
        1.0,
        gt=0.0,
        description="max global L2 norm of the gradients per step (null: no clipping); keeps "
        "one bad batch from throwing Adam's moment estimates off",
    )
    warmup_epochs: float = Field(
        1.0,
        ge=0.0,
        description="linear lr warm-up from ~0 over this many epochs' worth of optimizer steps "
        "(0: none), while Adam's second-moment estimates are still noisy",
    )
    schedule: Literal["cosine", "constant", "plateau"] = Field(
        "cosine",
        description="lr after the warm-up, set per optimizer step. cosine: decays to "
        "min_lr_ratio * lr at the last step of the last epoch; constant: stays at lr; plateau: "
        "halves at an epoch end when the selection score has not improved for plateau_patience "
        "epochs (not below min_lr_ratio * lr)",
    )
    min_lr_ratio: float = Field(
        0.05, ge=0.0, le=1.0, description="cosine's final lr and plateau's floor, as a share of lr"
    )
    plateau_patience: int = Field(
        2, ge=1, description="epochs without improvement before the plateau schedule halves lr"
    )
    ema_epochs: float | None = Field(
        1.0,
        gt=0.0,
        description="time constant, in epochs, of an exponential moving average of the weights "
        "(vavl.averaging), which dev evaluation, checkpoint selection, the test split and the "
        "logged model use; it removes the step-to-step jitter that makes dev curves on small dev "
        "splits noisy. null: the raw weights (the paper)",
    )

    @model_validator(mode="after")
    def _check_warmup(self) -> OptimConfig:
        if self.warmup_epochs > self.epochs:
            raise ValueError(
                f"warmup_epochs={self.warmup_epochs:g} exceeds epochs={self.epochs}: the run "
                "would end before the lr reaches optim.lr"
            )
        return self


class DataConfig(_Strict):
    @field_validator("normalize", mode="before")
    @classmethod
    def _normalize_bool(cls, value: Any) -> Any:
        """Recipes written when this was a switch: true meant global statistics."""
        if isinstance(value, bool):
            return "global" if value else "none"
        return value

    store: str = Field("data/demo/store", description="feature store path or s3:// URI")
    normalize: Literal["none", "global", "speaker"] = Field(
        "speaker",
        description="how frames are normalised before the model sees them. speaker (default): "
        "subtract each speaker's own mean (from that speaker's frames in the store, all splits; "
        "no labels) and divide by the train split's within-speaker std, which removes what is "
        "constant within a speaker (voice, face, microphone); global: train mean and std; "
        "none. Use global when speaker ids are unknown or most speakers have few utterances",
    )
    speaker_min_utterances: int = Field(
        5,
        ge=1,
        description="speakers with fewer utterances of a modality are centred on the global "
        "mean instead of their own (too few frames to estimate it)",
    )
    bucket_batches: int | None = Field(
        None,
        ge=1,
        description="length bucketing of a kept (in-memory, see cache_mb) train split: each "
        "window of this many batches of the shuffled rows is sorted by frame count before it "
        "is cut into batches, which are then shuffled, so a batch pads little; null: plain "
        "shuffled batches",
    )
    cache_mb: int = Field(
        1024,
        ge=0,
        description="keep a worker's share of the train split (and rank 0's dev split) in memory "
        "after the first epoch when the manifest says it fits in this many MiB; 0 = always stream",
    )


class TrainConfig(_Strict):
    """How and where training runs."""

    workers: int = Field(2, ge=1)
    gpus_per_worker: float = Field(0.0, ge=0.0)
    cpus_per_worker: float = Field(
        1.0, gt=0.0, description="CPUs per worker; leave one CPU of the cluster for Ray Data"
    )
    threads_per_worker: int | None = Field(
        None,
        ge=1,
        description="torch intra-op threads in each worker; null: the node's cores divided among "
        "the run's workers on that node (Ray would otherwise give a worker with under 2 CPUs "
        "one thread, leaving cores idle once the data is in memory)",
    )
    precision: Literal["auto", "fp32", "bf16", "fp16"] = Field(
        "auto",
        description="auto: bf16 where the hardware runs it natively (a CPU with AMX or "
        "AVX512-BF16, a GPU of compute capability >= 8.0), fp16 with a gradient scaler on older "
        "GPUs, else fp32 (vavl.runtime.resolve_precision; the run's tag vavl.precision says "
        "which). bf16 without native support is many times slower than fp32 and warns",
    )
    seed: int = 0
    max_failures: int = Field(1, ge=0)
    checkpoints_to_keep: int = Field(2, ge=1)
    resource_timeout_s: float = Field(
        600.0,
        ge=0.0,
        description="how long to wait for the Ray cluster (or its autoscaler) to provide the "
        "workers' resources before failing; 0 fails at once when the cluster is too small",
    )
    selection_metric: str = Field(
        "dev/mean/macro_f1",
        pattern=r"^dev/(av|audio|visual|mean)/[a-z_0-9]+$",
        description="dev/{condition}/{metric}: condition av, audio, visual, or mean (default: the "
        "metric's mean over the conditions the dev split has). The fusion head trains on paired "
        "rows only and peaks earlier than the branches when part of the corpus is unpaired: "
        "selecting on dev/av alone then keeps undertrained branches (the paper selects on the "
        "fusion's dev loss)",
    )
    selection_mode: Literal["max", "min"] = "max"
    selection_smoothing: int = Field(
        1,
        ge=1,
        description="the best checkpoint, early stopping, the plateau schedule and sweeps use the "
        "mean of the selection metric over the last k epochs, logged as "
        "`{selection_metric}_smoothed` (1: the raw metric); k > 1 keeps one lucky epoch on a "
        "small dev split from being chosen",
    )
    patience: int | None = Field(
        5,
        ge=1,
        description="stop when the smoothed selection metric has not improved for this many "
        "epochs (null: always run optim.epochs); the test split still uses the best checkpoint",
    )
    progress_every_s: float | None = Field(
        30.0,
        ge=0.0,
        description="inside an epoch, rank 0's step progress (step, loss, samples/s, ETA): on a "
        "terminal one line rewritten in place every second; elsewhere (CI, `ray job logs`) a "
        "plain line every this many seconds, so a long epoch is never silent. null: epoch lines "
        "only",
    )
    storage_path: str = Field("runs", description="checkpoint storage: local folder or s3:// URI")
    experiment: str = "vavl"
    register_model: str | None = None

    @property
    def selection_key(self) -> str:
        """The reported metric that chooses checkpoints and trials: the smoothed selection one."""
        return f"{self.selection_metric}_smoothed"


class TuneConfig(_Strict):
    """ASHA and Optuna settings of a sweep; the search space lives in each tuning/ script
    (`vavl.spaces`)."""

    trials: int = Field(8, ge=1)
    concurrent: int = Field(2, ge=1)
    grace_period: int = Field(1, ge=1)
    reduction_factor: int = Field(2, ge=2)
    sampler_seed: int = 0
    storage_path: str = "sweeps"
    recipe_dir: str = Field(
        "configs/tuned",
        description="folder (relative to the working directory) where a sweep writes its best "
        "config as <sweep name>.yaml",
    )
    start_from_recipe: bool = Field(
        True,
        description="the first trial runs the recipe's own values of the searched parameters "
        "(where they lie inside the search space), so the sweep's best is never worse on dev "
        "than the recipe it started from",
    )


class ExperimentConfig(_Strict):
    name: str = "vavl"
    model: ModelConfig = Field(default_factory=ModelConfig)
    task: TaskConfig = Field(default_factory=TaskConfig)
    loss: LossConfig = Field(default_factory=LossConfig)
    optim: OptimConfig = Field(default_factory=OptimConfig)
    data: DataConfig = Field(default_factory=DataConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    tune: TuneConfig = Field(default_factory=TuneConfig)

    def flat_params(self) -> dict[str, Any]:
        """Dotted-path params for MLflow, identical in training runs and sweep trials.

        The two tuned loss weights are also given under their bare names, which is how the
        sweep and the MLflow compare view refer to them.
        """
        flat = _flatten(self.model_dump(mode="json"))
        flat["residual_weight"] = self.loss.residual_weight
        flat["reconstruction_weight"] = self.loss.reconstruction_weight
        return flat

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)


def _flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{path}."))
        else:
            flat[path] = value
    return flat


# Per dotted path of a raw config tree: where its value was set ("configs/x.yaml, line 3" or
# "--set a.b=c"), for the validation messages, and the text of a plain YAML scalar as written,
# so that a str field gets "2024" or "0123" as typed instead of what YAML made of it.
Sources = dict[tuple[str, ...], str]
Texts = dict[tuple[str, ...], str]
# What YAML makes of numeric-, boolean- or date-looking plain scalars (datetime is a date).
_NON_STR_SCALARS = (bool, int, float, datetime.date)


def apply_overrides(
    tree: dict[str, Any],
    overrides: list[str],
    texts: Texts | None = None,
    sources: Sources | None = None,
) -> dict[str, Any]:
    """Apply `a.b.c=value` strings to a raw config tree; values parse as YAML scalars/lists.

    A value that is not valid YAML fails naming the override and the column in it. `texts` and
    `sources`, when given, learn each value's text as typed and that it came from this override.
    """
    for item in overrides:
        keys, raw = _split_override(item)
        value, node = _parse_yaml(raw, f"--set {item}", column_offset=len(item) - len(raw))
        _section_for(tree, keys, item)[keys[-1]] = value
        if texts is not None:
            _forget(texts, keys)
            _scalar_texts(node, keys, texts)
        if sources is not None:
            _forget(sources, keys)
            sources[keys] = f"--set {item}"
    return tree


def _split_override(item: str) -> tuple[tuple[str, ...], str]:
    if "=" not in item:
        raise ConfigError(f"override {item!r} is not of the form section.field=value")
    path, raw = item.split("=", 1)
    keys = tuple(key.strip() for key in path.strip().split("."))
    if not all(keys):
        raise ConfigError(f"override {item!r}: empty key in {path.strip()!r}")
    return keys, raw


def _section_for(tree: dict[str, Any], keys: tuple[str, ...], item: str) -> dict[str, Any]:
    node = tree
    for key in keys[:-1]:
        child = node.setdefault(key, {})
        if not isinstance(child, dict):
            raise ConfigError(f"override {item!r}: {key!r} is a value, not a section")
        node = child
    return node


def _forget(by_path: dict[tuple[str, ...], str], keys: tuple[str, ...]) -> None:
    """Drop what was recorded at `keys` and below: an override replaced it."""
    for path in [p for p in by_path if p[: len(keys)] == keys]:
        del by_path[path]


def _parse_yaml(text: str, where: str, *, column_offset: int = 0) -> tuple[Any, yaml.Node | None]:
    """The value of one YAML document and its node tree; ConfigError naming line and column."""
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        return (loader.construct_document(node) if node is not None else None), node
    except yaml.YAMLError as err:
        raise _syntax_error(err, where, column_offset) from None
    finally:
        loader.dispose()


def _syntax_error(err: yaml.YAMLError, where: str, column_offset: int) -> ConfigError:
    problem = getattr(err, "problem", None) or str(err)
    context = getattr(err, "context", None)
    what = f"{context}: {problem}" if context else problem
    mark = getattr(err, "problem_mark", None)
    if mark is None:
        return ConfigError(f"{where}: not valid YAML: {what}")
    column = mark.column + 1 + (column_offset if mark.line == 0 else 0)
    return ConfigError(f"{where}: not valid YAML at line {mark.line + 1}, column {column}: {what}")


def _scalar_texts(node: yaml.Node | None, prefix: tuple[str, ...], texts: Texts) -> None:
    """The text of every plain (unquoted) scalar under `node`, by dotted path."""
    if isinstance(node, yaml.ScalarNode) and node.style is None:
        texts[prefix] = node.value
    elif isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            if isinstance(key, yaml.ScalarNode):
                _scalar_texts(value, (*prefix, key.value), texts)


def _key_lines(node: yaml.Node, prefix: tuple[str, ...], where: str, sources: Sources) -> None:
    """ "FILE, line N" of every key of the mapping `node` and of the mappings below it."""
    if not isinstance(node, yaml.MappingNode):
        return
    for key, value in node.value:
        if isinstance(key, yaml.ScalarNode):
            path = (*prefix, key.value)
            sources[path] = f"{where}, line {key.start_mark.line + 1}"
            _key_lines(value, path, where, sources)


def _read_recipe(path: Path) -> tuple[dict[str, Any], Texts, Sources]:
    """A recipe's raw tree, the text of its plain scalars and the line of each of its keys."""
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"config file {path} cannot be read as UTF-8 text: {err}") from None
    loaded, node = _parse_yaml(text, f"config file {path}")
    if loaded is not None and not isinstance(loaded, dict):
        raise ConfigError(f"config file {path} must hold a mapping, got {type(loaded).__name__}")
    texts: Texts = {}
    sources: Sources = {}
    _scalar_texts(node, (), texts)
    if node is not None:
        _key_lines(node, (), str(path), sources)
    return loaded or {}, texts, sources


def _takes_str(annotation: Any) -> bool:
    """A field typed str (or str | None), where a number is not itself a valid value."""
    if annotation is str:
        return True
    if get_origin(annotation) in (Union, types.UnionType):
        args = get_args(annotation)
        return str in args and not any(a in args for a in (bool, int, float))
    return False


def _section_model(annotation: Any) -> type[BaseModel] | None:
    candidates = get_args(annotation) if get_origin(annotation) else (annotation,)
    for candidate in candidates:
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None


def _strings_for_str_fields(
    tree: dict[str, Any], model: type[BaseModel], texts: Texts, prefix: tuple[str, ...] = ()
) -> dict[str, Any]:
    """`tree` with every number, boolean or date YAML gave a str-typed field of `model` (and of
    its sections) as a string: the text as written where known, else str(value)."""
    out = dict(tree)
    for key, value in tree.items():
        field = model.model_fields.get(key) if isinstance(key, str) else None
        if field is None:
            continue
        path = (*prefix, key)
        section = _section_model(field.annotation)
        if section is not None and isinstance(value, dict):
            out[key] = _strings_for_str_fields(value, section, texts, path)
        elif _takes_str(field.annotation) and isinstance(value, _NON_STR_SCALARS):
            out[key] = texts.get(path, str(value))
    return out


def validate_config(
    tree: dict[str, Any],
    source: str = "config",
    *,
    texts: Texts | None = None,
    sources: Sources | None = None,
) -> ExperimentConfig:
    """The experiment a raw tree describes; ConfigError naming each bad field (and, given
    `sources`, the recipe line or override that set it)."""
    if isinstance(tree, dict):
        tree = _strings_for_str_fields(tree, ExperimentConfig, texts or {})
    try:
        return ExperimentConfig.model_validate(tree)
    except ValidationError as err:
        raise ConfigError(f"invalid {source}:\n{_describe(err, sources)}") from None


def load_config(
    path: str | Path | None = None, overrides: list[str] | None = None
) -> ExperimentConfig:
    """Load a YAML recipe (a path, or a shipped recipe's name: `vavl.recipes`; the defaults when
    `path` is None) and apply overrides.

    Imports only yaml and pydantic, so that a command line can check its config in a second,
    before it imports torch, Ray or MLflow. Every mistake is a ConfigError naming the file and
    line, or the --set item, and column where the YAML itself is broken.
    """
    tree: dict[str, Any] = {}
    texts: Texts = {}
    sources: Sources = {}
    source = "defaults"
    if path is not None:
        from vavl.recipes import resolve_recipe  # it imports this module

        path = resolve_recipe(path)
        tree, texts, sources = _read_recipe(path)
        source = str(path)
    apply_overrides(tree, overrides or [], texts, sources)
    return validate_config(tree, source, texts=texts, sources=sources)


def _source_of(loc: tuple[Any, ...], sources: Sources | None) -> str | None:
    """Where the deepest recorded part of the field path `loc` was set."""
    path = tuple(str(part) for part in loc)
    while path and sources:
        if path in sources:
            return sources[path]
        path = path[:-1]
    return None


def _describe(err: ValidationError, sources: Sources | None = None) -> str:
    lines = []
    for issue in err.errors():
        where = ".".join(str(part) for part in issue["loc"]) or "(top level)"
        message = issue["msg"]
        if issue["type"] == "extra_forbidden":
            message = "unknown key (not a field of this section)"
        elif issue["type"] == "literal_error":
            message = f"{message}; got {issue.get('input')!r}"
        origin = _source_of(issue["loc"], sources)
        lines.append(f"  {where}: {message}" + (f" ({origin})" if origin else ""))
    return "\n".join(lines)
