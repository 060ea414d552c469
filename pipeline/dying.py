"""What dies during IMP (docs/science.md §8): per-level quantities, episodes, bias survival and the
death of frozen parameters, from the level files the analyze stage reads.

Per (seed, level): the pruning threshold τ_k, the pruning budget spent on parameters that were
not alive, the alive share, the parameters frozen in the level's training, what the cut C_w
(docs/science.md §6) is made of, and the ticket's true size after folding the constant neurons
(checked by a forward pass). Over the run (`Tracker`): zombie and comatose episodes, bias
survival, and for every parameter frozen at some level its predicted and actual death.
The statistical answers (H1–H6, the death prediction) are pipeline.dying_answers.

Layer numbering as in every table (pipeline.analysis): the i-th linear map's weights, biases and
output neurons carry layer i; a hidden neuron of node layer h carries layer h − 1.
"""
from __future__ import annotations

import dataclasses
import gzip
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch

from pipeline.config import TrainConfig
from pipeline.graph import ALIVE, PRUNED, Analysis
from pipeline.model import Layout

FOLD_TOLERANCE = 1e-5   # max |Δ| of the outputs, folded against unfolded net
NOT_MEASURED = "not testable: weight decay without the engine's frozen record"
LEVEL_COLUMNS = ("prune_threshold", "newly_pruned", "pruned_dead", "pruned_dead_share", "alive_share",
                 "frozen_params", "frozen_w", "frozen_b", "cut_frozen_share", "cut_init_ratio",
                 "folded_params", "fold_max_abs_diff")


def count(flags: torch.Tensor) -> np.ndarray:
    """[K] int64: True entries per row of flags [K, ...] (numpy's byte count: torch's sum of a
    bool tensor widens every entry to int64 first, several times slower)."""
    return np.count_nonzero(flags.reshape(flags.shape[0], -1).numpy(), axis=1).astype(np.int64)


class FoldError(Exception):
    """Folding the constant neurons changed a network's outputs: the states are wrong."""


# ---- frozen parameters -------------------------------------------------------------------------
def start_values(level: int, method: str, theta0: torch.Tensor, rewind: torch.Tensor,
                 mask: torch.Tensor, previous: torch.Tensor | None, control: bool = False
                 ) -> torch.Tensor:
    """[K, P] the values a level's training starts from (docs/science.md §4, pipeline.imp.level_start):
    level 0 (the dense training) θ₀; level k ≥ 1 with prune.method `rewind`, and the random-mask
    control always, θ_rewind · mask_k; with `finetune` the previous level's trained θ · mask_k."""
    if level == 0:
        return theta0 * mask
    if control or method == "rewind":
        return rewind * mask
    if previous is None:
        raise ValueError("prune.method finetune needs the previous level's trained weights")
    return previous * mask


def frozen_params(state: dict[str, torch.Tensor], prefix: str, start: torch.Tensor,
                  weight_decay: float, *, mask: torch.Tensor | None = None,
                  theta: torch.Tensor | None = None) -> torch.Tensor | None:
    """[K, P] bool: the unpruned parameters of population `prefix` ("" or "random.") frozen in
    the level's training (their loss gradient exactly 0 at every step, docs/science.md §8).

    Prefers the engine's record `{prefix}metrics.frozen`. Without it, and without weight decay,
    a parameter is frozen when its trained value equals its start value `start` [K, P] bit for
    bit (a nonzero gradient moves it); with weight decay that test says nothing (decay moves a
    frozen parameter too): None, "not measured". `mask` / `theta`: the level's mask and trained
    values when already read from `state`."""
    from pipeline.model import layers_from_state

    if mask is None or theta is None:
        layout = Layout(layers_from_state(state))
        mask = layout.from_state(state, prefix, masks=True) if mask is None else mask
        theta = layout.from_state(state, prefix) if theta is None else theta
    record = state.get(f"{prefix}metrics.frozen")
    if record is not None:
        return record.to(torch.bool) & mask
    if weight_decay:
        return None
    same = theta.contiguous().view(torch.int32) == start.to(theta.dtype).contiguous().view(torch.int32)
    return mask & same


# ---- per-level quantities ----------------------------------------------------------------------
def prune_threshold(ranked: torch.Tensor, mask: torch.Tensor, prunable: torch.Tensor) -> np.ndarray:
    """τ_k [K] float64: the smallest |value| among the prunable parameters level k keeps
    (mask [K, P]), ranked by `ranked` [K, P] (level k−1's trained values, as
    pipeline.imp.prune_global ranks them); NaN where it keeps none."""
    kept = mask & prunable
    score = torch.where(kept, ranked.abs(), torch.full_like(ranked, float("inf")))
    tau = score.min(dim=1).values.to(torch.float64).numpy()
    return np.where(kept.any(dim=1).numpy(), tau, np.nan)


def pruning_budget(prev_mask: torch.Tensor, prev_state: torch.Tensor, mask: torch.Tensor,
                   prunable: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """(pruned, pruned_dead) [K]: prunable parameters unpruned at level k−1 and pruned at k, and
    of those the ones whose state at k−1 (prev_state, graph.STATES codes) was not alive."""
    gone = prev_mask & ~mask & prunable
    return count(gone), count(gone & (prev_state != ALIVE))


@dataclass
class Folded:
    """A level's networks with the constant neurons folded (fold)."""

    alive: torch.Tensor          # [K, P] bool: the parameters the folded nets keep (+ biases)
    biases: list[torch.Tensor]   # per layer [K, n] float64: b' (0 off the kept neurons)
    kept: list[torch.Tensor]     # per layer [K, n] bool: the neurons the folded nets keep
    added: np.ndarray            # [K] biases not alive and nonzero after folding
    changed: torch.Tensor        # [K] bool: folding changed some value of the network

    def network(self, layout: Layout, theta: torch.Tensor, net: int) -> torch.Tensor:
        """The folded network `net` [P] float64: its alive values of theta, and b'."""
        out = torch.where(self.alive[net], theta[net], torch.zeros_like(theta[net])).double()
        for (_, b, e), bias in zip(layout.offsets, self.biases):
            out[b:e] = bias[net]
        return out


def fold(layout: Layout, res: Analysis, theta: torch.Tensor) -> Folded:
    """The ticket's true size (docs/science.md §8), in float64.

    Layer by layer, a neuron no input reaches (not I: zombies and the audience behind them)
    outputs a constant c = ReLU(b + Σ w·c_src) (at an output neuron, no ReLU); its contribution
    w·c is folded into the bias of every neuron it feeds. The folded net keeps the alive weights
    and, as biases, b' = b + Σ folded contributions of the hidden neurons that are alive (I and
    O) and of every output neuron (an output no input reaches keeps its constant as b'); every
    other entry is 0. `added` counts the biases that were not alive (pruned, or of an output
    no input reaches) and are nonzero after folding: folded_params = alive + added."""
    alive = res.state == ALIVE
    changed = (~alive & (res.state != PRUNED)).any(dim=1)   # an unpruned entry is dropped
    k, depth = theta.shape[0], layout.depth
    const = torch.zeros(k, layout.layers[0], dtype=torch.float64)   # inputs: reached, none
    added = torch.zeros(k, dtype=torch.long)
    biases, kept_all = [], []
    for i, ((w, b), (_, b0, e0)) in enumerate(zip(layout.views(theta), layout.offsets)):
        z = b.double()
        cols = const.ne(0).any(dim=0).nonzero().squeeze(1)  # sources with a nonzero constant
        if len(cols):
            z = z + torch.bmm(w[:, :, cols].double(), const[:, cols].unsqueeze(2)).squeeze(2)
        last = i == depth - 1
        reached = res.reach_in[i + 1]
        kept = torch.ones_like(reached) if last else reached & res.reach_out[i + 1]
        kept_all.append(kept)
        biases.append(torch.where(kept, z, torch.zeros_like(z)))
        added += (kept & ~alive[:, b0:e0] & (z != 0)).sum(dim=1)
        changed |= (biases[-1] != b.double()).any(dim=1)
        c = z if last else torch.relu(z)
        const = torch.where(reached, torch.zeros_like(c), c)
    return Folded(alive, biases, kept_all, added.numpy(), changed)


# Layouts below this many parameters run the fold check with one dense product per layer and
# network; wider ones sparse-aware (functional.network_logits: unused columns dropped, CSR).
DENSE_BELOW = 2 ** 16


def _dense_logits(layout: Layout, theta: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Logits [N, n_out] of ONE network theta [P] for x [N, n_in] (ReLU hidden layers, linear
    output, as pipeline.model.forward): 2-D products, which float64 runs several times faster
    than batched ones here."""
    views = layout.views(theta.unsqueeze(0))
    h = x
    for i, (w, b) in enumerate(views):
        h = torch.addmm(b[0], h, w[0].T)
        if i < len(views) - 1:
            h = h.relu_()
    return h


def _first_product(w: torch.Tensor, x_t: torch.Tensor) -> np.ndarray:
    """W·x [out, N] as float64 of the float32 product of one network's first weight matrix w
    [out, in] and the rows x_t [in, N] (inputs without a weight left out; scipy CSR below
    functional.SPARSE_BELOW density, as functional.network_logits)."""
    from scipy.sparse import csr_matrix

    from pipeline.functional import SPARSE_BELOW

    wn = w.numpy()
    cols = np.flatnonzero(wn.any(axis=0))
    sub, xs = wn[:, cols], x_t.numpy()[cols]
    if np.count_nonzero(sub) < SPARSE_BELOW * max(sub.size, 1):
        return np.asarray(csr_matrix(sub) @ xs, dtype=np.float64)
    return (torch.from_numpy(np.ascontiguousarray(sub)) @ torch.from_numpy(xs)).numpy() \
        .astype(np.float64)


def _wide_difference(layout: Layout, theta: torch.Tensor, folded: Folded, net: int,
                     x_t: torch.Tensor) -> float:
    """max |Δ| of one wide network (one at a time, sparse-aware: functional.network_logits).

    Folding never changes the first weight matrix's rows of the neurons it keeps (their
    sources are inputs, all reached; their biases fold nothing), so where the folded first
    layer is those rows and zeros elsewhere, both nets share its product W·x (float32, the
    dominant cost; its rounding is the same for both and cancels in Δ) and the later layers run
    in float64; otherwise (a wrong state) both nets run in float64 from the inputs."""
    from pipeline.functional import network_logits

    mine = folded.network(layout, theta, net)
    w, b = layout.views(theta[net].unsqueeze(0))[0]
    fw, fb = layout.views(mine.unsqueeze(0))[0]
    kept = folded.kept[0][net]
    shared = layout.depth > 1 and torch.equal(fw[0][kept], w[0][kept].double()) \
        and not bool(fw[0][~kept].any())
    if not shared:
        x64 = x_t.double()
        return float((network_logits(layout, theta[net].double(), x64)
                      - network_logits(layout, mine, x64)).abs().max())
    z = _first_product(w[0], x_t)
    h = np.maximum(z + b[0].double().numpy()[:, None], 0)
    h_folded = np.maximum(z + fb[0].numpy()[:, None], 0) * kept.numpy()[:, None]
    rest, start = Layout(layout.layers[1:]), layout.offsets[0][2]
    a = network_logits(rest, theta[net, start:].double(), torch.from_numpy(h))
    c = network_logits(rest, mine[start:], torch.from_numpy(h_folded))
    return float((a - c).abs().max())


def fold_difference(layout: Layout, theta: torch.Tensor, folded: Folded,
                    x: torch.Tensor) -> np.ndarray:
    """[K] max |Δ| over the rows x [N, n_in] and the outputs between the logits of theta [K, P]
    and of the folded networks, one network at a time; 0 without a forward pass where folding
    changed no value (every unpruned parameter alive, nothing folded). Computed in float64 from
    the float32 values: folding reorders sums, and in float32 logits of 40–65 (the default
    run's) round by 4–8e-6 per ulp, so a float32 comparison would fail FOLD_TOLERANCE on
    rounding alone; in float64 a correct fold differs by ~1e-14 and a wrong state by the
    contribution it drops. Wide layouts (≥ DENSE_BELOW parameters): _wide_difference."""
    out = np.zeros(theta.shape[0])
    changed = folded.changed.nonzero().squeeze(1).tolist()
    if not len(x) or not changed:
        return out
    if layout.size >= DENSE_BELOW:
        x_t = x.T.contiguous()
        for net in changed:
            out[net] = _wide_difference(layout, theta, folded, net, x_t)
        return out
    x = x.double()
    for net in changed:
        a = _dense_logits(layout, theta[net].double(), x)
        out[net] = float((a - _dense_logits(layout, folded.network(layout, theta, net), x))
                         .abs().max())
    return out


def cut_columns(cut_w: torch.Tensor | None, frozen: torch.Tensor | None, theta: torch.Tensor,
                theta0: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """(cut_frozen_share, cut_init_ratio) [K] over the weights of C_w (cut_w [K, P] bool; None:
    split not applicable): the share frozen in the level's training (NaN without `frozen`), and
    the median |θ_trained| / |θ₀| (a zero θ₀ gives ∞, or NaN with a zero trained value, which
    the median skips). NaN where C_w is empty."""
    k = theta.shape[0]
    share, ratio = np.full(k, np.nan), np.full(k, np.nan)
    if cut_w is None:
        return share, ratio
    size = count(cut_w)
    if frozen is not None:
        with np.errstate(invalid="ignore", divide="ignore"):
            share = np.where(size > 0, count(frozen & cut_w) / size, np.nan)
    cut, now, init = cut_w.numpy(), theta.numpy(), theta0.numpy()
    for net in np.flatnonzero(size):
        idx = np.flatnonzero(cut[net])
        with np.errstate(invalid="ignore", divide="ignore"):
            r = np.abs(now[net, idx].astype(np.float64)) / np.abs(init[net, idx].astype(np.float64))
        r = r[~np.isnan(r)]
        ratio[net] = float(np.median(r)) if len(r) else np.nan
    return share, ratio


def frozen_counts(layout: Layout, frozen: torch.Tensor | None, k: int
                  ) -> tuple[np.ndarray, np.ndarray]:
    """(frozen weights, frozen biases) [K] float (NaN where not measured), over contiguous slices
    of the flat layout (no copies)."""
    if frozen is None:
        return np.full(k, np.nan), np.full(k, np.nan)
    w = sum(count(frozen[:, a:b]) for a, b, _ in layout.offsets)
    b = sum(count(frozen[:, b:e]) for _, b, e in layout.offsets)
    return w.astype(np.float64), b.astype(np.float64)


# ---- the run: what the analyze stage hands over, level by level ---------------------------------
@dataclass
class RunInfo:
    """What the dying analysis needs besides the level files."""

    layout: Layout
    prunable: torch.Tensor     # [P] bool
    theta0: torch.Tensor       # [K, P] θ₀ (models/init.pt), rows in the level files' seed order
    rewind: torch.Tensor       # [K, P] θ_rewind: θ₀, or the weights after prune.rewind epochs
    method: str                # prune.method: rewind | finetune
    train: TrainConfig         # weight_decay, the optimizer of decay_only, batch_size, restore_best
    n_train: int               # training rows (optimizer steps per epoch)
    x_test: torch.Tensor       # [N, n_in] the rows of the fold check
    seeds: list[int]

    @property
    def steps_per_epoch(self) -> int:
        size = self.train.batch_size
        return 1 if size is None else -(-self.n_train // size)

    @property
    def biases_prunable(self) -> bool:
        return bool(self.prunable[self.layout.is_bias()].any())


@dataclass
class NeuronLevel:
    """One level of the tickets' hidden neurons: per hidden layer [K, n] arrays."""

    has_in: list[np.ndarray]
    has_out: list[np.ndarray]
    bias_mask: list[np.ndarray]
    bias: list[np.ndarray]                  # trained values (0 where pruned)
    frozen_out: list[np.ndarray] | None     # every unpruned outgoing weight frozen (None: not measured)
    frozen_in: list[np.ndarray] | None      # every unpruned incoming weight and the bias frozen


def neuron_level(layout: Layout, mask: torch.Tensor, theta: torch.Tensor, res: Analysis,
                 frozen: torch.Tensor | None) -> NeuronLevel:
    """The hidden neurons' flags and biases of one level (hidden node layer h: weight matrix
    h − 1 feeds it, weight matrix h reads it)."""
    mv, tv = layout.views(mask), layout.views(theta)
    hidden = range(1, layout.depth)
    out = NeuronLevel([res.has_in[h].numpy() for h in hidden],
                      [res.has_out[h].numpy() for h in hidden],
                      [mv[h - 1][1].numpy().copy() for h in hidden],
                      [tv[h - 1][1].numpy().copy() for h in hidden], None, None)
    if frozen is not None:
        fv = layout.views(frozen)
        out.frozen_out = [(~mv[h][0] | fv[h][0]).all(dim=1).numpy() for h in hidden]
        out.frozen_in = [((~mv[h - 1][0] | fv[h - 1][0]).all(dim=2)
                          & (~mv[h - 1][1] | fv[h - 1][1])).numpy() for h in hidden]
    return out


class Tracker:
    """Feeds on the analyze stage's levels one by one (tickets "" and random masks "random."):
    `level` returns the per-level columns of docs/science.md §8; `tables` the run-wide ones."""

    def __init__(self, run: RunInfo):
        self.run = run
        self.prev: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None  # tickets
        self.neurons: list[NeuronLevel] = []
        self.bias_masks: list[torch.Tensor] = []
        self.dense_bias: torch.Tensor | None = None
        self.deaths = Deaths(run)
        self.is_bias = run.layout.is_bias()

    def level(self, level: int, prefix: str, state: dict[str, torch.Tensor], mask: torch.Tensor,
              theta: torch.Tensor, res: Analysis, cut_w: torch.Tensor | None
              ) -> dict[str, np.ndarray]:
        """The LEVEL_COLUMNS of one population of one level. Raises FoldError (naming the seed
        and level) where folding changes the outputs by more than FOLD_TOLERANCE."""
        run, control = self.run, bool(prefix)
        previous = None if self.prev is None else self.prev[1]
        start = start_values(level, run.method, run.theta0, run.rewind, mask, previous, control)
        frozen = frozen_params(state, prefix, start, run.train.weight_decay, mask=mask, theta=theta)
        cols = self._columns(level, control, mask, theta, res, cut_w, frozen)
        bad = np.flatnonzero(~(cols["fold_max_abs_diff"] <= FOLD_TOLERANCE))
        if len(bad):
            net = int(bad[0])
            raise FoldError(f"seed {run.seeds[net]} level {level}{' (random masks)' if control else ''}: "
                            f"folding the constant neurons changed the outputs by "
                            f"{cols['fold_max_abs_diff'][net]:.3g} > {FOLD_TOLERANCE:g} on the "
                            "test rows: the parameter states (docs/science.md §5) are wrong")
        if not control:
            self._record(level, state, mask, theta, res, frozen, cols["prune_threshold"])
        return cols

    def _columns(self, level, control, mask, theta, res, cut_w, frozen) -> dict[str, np.ndarray]:
        run, k = self.run, mask.shape[0]
        nan = np.full(k, np.nan)
        tau, pruned, dead = nan, nan, nan
        if level and not control:
            prev_mask, prev_theta, prev_state = self.prev
            tau = prune_threshold(prev_theta, mask, run.prunable)
            pruned, dead = (c.astype(np.float64) for c in
                            pruning_budget(prev_mask, prev_state, mask, run.prunable))
        unpruned = count(mask)
        alive = count(res.state == ALIVE)
        folded = fold(run.layout, res, theta)
        share, ratio = cut_columns(cut_w, frozen, theta, run.theta0)
        frozen_w, frozen_b = frozen_counts(run.layout, frozen, k)
        with np.errstate(invalid="ignore", divide="ignore"):
            return {"prune_threshold": tau, "newly_pruned": pruned, "pruned_dead": dead,
                    "pruned_dead_share": np.where(pruned > 0, dead / pruned, np.nan),
                    "alive_share": np.where(unpruned > 0, alive / unpruned, np.nan),
                    "frozen_params": frozen_w + frozen_b, "frozen_w": frozen_w,
                    "frozen_b": frozen_b, "cut_frozen_share": share, "cut_init_ratio": ratio,
                    "folded_params": alive + folded.added,
                    "fold_max_abs_diff": fold_difference(run.layout, theta, folded, run.x_test)}

    def _record(self, level, state, mask, theta, res, frozen, tau) -> None:
        """The tickets' run-wide records (episodes, bias survival, frozen deaths)."""
        layout = self.run.layout
        self.neurons.append(neuron_level(layout, mask, theta, res, frozen))
        self.bias_masks.append(torch.cat([b for _, b in layout.views(mask)], dim=1))
        if level == 0:
            self.dense_bias = torch.cat([b for _, b in layout.views(theta)], dim=1)
        self.deaths.add(level, mask, theta, frozen, tau, level_steps(state, self.run))
        self.prev = (mask, theta, res.state)

    def tables(self) -> tuple[dict[str, pd.DataFrame], np.ndarray]:
        """({episodes, bias_survival, frozen_deaths} frames, zombies without bias per seed)."""
        run = self.run
        init_bias = [b.numpy() for _, b in run.layout.views(run.theta0)]
        episodes, without = neuron_episodes(self.neurons, init_bias[:-1], run.seeds)
        survival = bias_survival(self.bias_masks, self.dense_bias,
                                 torch.cat([torch.from_numpy(b) for b in init_bias], dim=1),
                                 run.layout, run.seeds, run.biases_prunable)
        return ({"episodes": episodes, "bias_survival": survival,
                 "frozen_deaths": self.deaths.frame()}, without)


def level_steps(state: dict[str, torch.Tensor], run: RunInfo) -> np.ndarray | None:
    """[K] optimizer steps up to the weights the tickets' training kept (docs/science.md §8: the
    decay-only trajectory): best_epoch × steps per epoch with train.restore_best, else epochs ×
    steps per epoch. None without weight decay (not needed) or without the metrics."""
    key = "metrics.best_epoch" if run.train.restore_best else "metrics.epochs"
    if not run.train.weight_decay or key not in state:
        return None
    return state[key].numpy().astype(np.int64) * run.steps_per_epoch


# ---- episodes and bias survival ----------------------------------------------------------------
EPISODE_COLUMNS = ["kind", "seed", "layer", "neuron", "first_level", "last_level", "lifetime",
                   "end", "censored", "bias_trained", "bias_init", "bias_pruned", "frozen",
                   "bias_pruned_level"]


def runs(flags: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Maximal runs of consecutive True levels in flags [L, K, n]: (net, neuron, first, last),
    sorted by net, neuron and first level."""
    f = flags.transpose(1, 2, 0)
    pad = np.zeros((*f.shape[:2], 1), dtype=bool)
    p = np.concatenate([pad, f, pad], axis=2)
    k, n, first = np.nonzero(p[..., 1:-1] & ~p[..., :-2])
    last = np.nonzero(p[..., 1:-1] & ~p[..., 2:])[2]
    return k, n, first, last


def first_true(flags: np.ndarray) -> np.ndarray:
    """Index of the first True along axis 0, NaN where none ([L, ...] → [...])."""
    return np.where(flags.any(axis=0), flags.argmax(axis=0), np.nan)


def _stacked(levels: list[NeuronLevel], name: str, layer: int) -> np.ndarray:
    return np.stack([getattr(lv, name)[layer] for lv in levels])


def _frozen_stack(levels: list[NeuronLevel], name: str, layer: int) -> np.ndarray:
    """[L, K, n] float: 1/0 where the level's frozen flags were measured, NaN where not."""
    shape = levels[0].has_in[layer].shape
    return np.stack([np.full(shape, np.nan) if getattr(lv, name) is None
                     else getattr(lv, name)[layer].astype(np.float64) for lv in levels])


def _episode_frame(kind: str, flags: np.ndarray, end: np.ndarray, layer: int, bias_mask, bias,
                   init_bias, frozen, seeds) -> pd.DataFrame:
    """Rows of one kind's episodes in one hidden layer; `end` [L, K, n] str: the end cause a run
    ending at the level before has (censored at the last level)."""
    k, n, first, last = runs(flags)
    levels = flags.shape[0]
    censored = last == levels - 1
    after = np.minimum(last + 1, levels - 1)
    bias_gone = first_true(~bias_mask)
    frozen_at = frozen[first, k, n]
    return pd.DataFrame({
        "kind": kind, "seed": np.asarray(seeds, dtype=np.int64)[k], "layer": layer, "neuron": n,
        "first_level": first, "last_level": last, "lifetime": last - first + 1,
        "end": np.where(censored, "censored", end[after, k, n]), "censored": censored,
        "bias_trained": bias[first, k, n], "bias_init": init_bias[k, n],
        "bias_pruned": ~bias_mask[first, k, n],
        "frozen": pd.array(np.where(np.isnan(frozen_at), None, frozen_at == 1), dtype="boolean"),
        "bias_pruned_level": pd.array(np.where(np.isnan(bias_gone[k, n]), None, bias_gone[k, n]),
                                      dtype="Int64")})


def neuron_episodes(levels: list[NeuronLevel], init_bias: list[np.ndarray], seeds: list[int]
                    ) -> tuple[pd.DataFrame, np.ndarray]:
    """Zombie and comatose episodes (docs/science.md §8) of the hidden neurons, and per seed [K] the
    zombies without bias.

    Zombie episode: a maximal run of levels in which the neuron is a zombie neuron (no unpruned
    incoming, some unpruned outgoing weight) and its bias is unpruned (a bias that is not
    prunable counts as unpruned); it ends with the level at which the neuron loses its last
    outgoing weight (`outgoing_lost`), its bias is pruned (`bias_pruned`), or both
    (`outgoing_lost_and_bias_pruned`). A zombie whose bias is already pruned at its first
    zombie level computes the constant 0: it starts no episode and is counted as a zombie
    without bias. Comatose episode: a maximal run of comatose levels (some unpruned incoming,
    no unpruned outgoing weight); it ends when the neuron loses its last incoming weight
    (`detached`). A run reaching the last level is censored (`end` = `censored`).
    init_bias: θ₀'s biases per hidden layer [K, n]."""
    without = np.zeros(len(seeds), dtype=np.int64)
    zombies, comatose = [], []
    for layer in range(len(levels[0].has_in) if levels else 0):
        hi, ho = _stacked(levels, "has_in", layer), _stacked(levels, "has_out", layer)
        bm, bias = _stacked(levels, "bias_mask", layer), _stacked(levels, "bias", layer)
        zombie = ~hi & ho
        k, n, first, _ = runs(zombie)
        np.add.at(without, k[~bm[first, k, n]], 1)
        end = np.where(~ho & ~bm, "outgoing_lost_and_bias_pruned",
                       np.where(~ho, "outgoing_lost", "bias_pruned"))
        zombies.append(_episode_frame("zombie", zombie & bm, end, layer, bm, bias,
                                      init_bias[layer], _frozen_stack(levels, "frozen_out", layer),
                                      seeds))
        comatose.append(_episode_frame("comatose", hi & ~ho, np.full(hi.shape, "detached"), layer,
                                       bm, bias, init_bias[layer],
                                       _frozen_stack(levels, "frozen_in", layer), seeds))
    parts = [f for f in zombies + comatose if len(f)]
    frame = (pd.concat(parts, ignore_index=True) if parts else
             pd.DataFrame({c: pd.Series(dtype=object) for c in EPISODE_COLUMNS}))
    return frame[EPISODE_COLUMNS], without


def comatose_events(episodes: pd.DataFrame) -> pd.DataFrame:
    """reports/analysis/events.csv from the comatose episodes: per comatose neuron its first and
    last comatose level, the level its bias was pruned and the level it was detached (lost its
    last incoming weight; null where never), and whether the bias went first."""
    c = episodes[episodes["kind"] == "comatose"]
    detached = c["last_level"].where(c["end"] == "detached") + 1
    bias = c["bias_pruned_level"]
    before = bias.notna() & (detached.isna() | (bias < detached))
    return pd.DataFrame({
        "seed": c["seed"], "layer": c["layer"], "neuron": c["neuron"],
        "first_comatose_level": c["first_level"].astype("Int64"),
        "last_comatose_level": c["last_level"].astype("Int64"),
        "bias_pruned_level": bias.astype("Int64"), "detached_level": detached.astype("Int64"),
        "bias_pruned_before_detached": before.fillna(False).astype(bool)}).reset_index(drop=True)


SURVIVAL_COLUMNS = ["seed", "layer", "neuron", "bias_dense", "sign", "bias_init", "pruned_level",
                    "survival", "censored"]


def bias_survival(bias_masks: list[torch.Tensor], dense_bias: torch.Tensor,
                  init_bias: torch.Tensor, layout: Layout, seeds: list[int],
                  prunable: bool) -> pd.DataFrame:
    """One row per prunable bias of a hidden or output neuron (docs/science.md §8): its trained value
    in the dense net (level 0) and sign, θ₀, the first level with mask 0 (`pruned_level`, null
    if never) and `survival` = levels it stays unpruned (pruned_level, or T + 1 if never:
    censored). bias_masks: per level [K, B] (every layer's biases in the flat order);
    dense_bias, init_bias [K, B]. No rows where biases are not prunable."""
    if not prunable or not bias_masks:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in SURVIVAL_COLUMNS})
    bm = torch.stack(bias_masks).numpy()
    pruned = first_true(~bm)
    k, b = np.meshgrid(np.arange(bm.shape[1]), np.arange(bm.shape[2]), indexing="ij")
    layer = np.concatenate([np.full(n, i) for i, n in enumerate(layout.layers[1:])])
    neuron = np.concatenate([np.arange(n) for n in layout.layers[1:]])
    dense = dense_bias.numpy()
    return pd.DataFrame({
        "seed": np.asarray(seeds, dtype=np.int64)[k.ravel()], "layer": layer[b.ravel()],
        "neuron": neuron[b.ravel()], "bias_dense": dense.ravel(),
        "sign": np.select([dense.ravel() > 0, dense.ravel() < 0], ["positive", "negative"], "zero"),
        "bias_init": init_bias.numpy().ravel(),
        "pruned_level": pd.array(np.where(np.isnan(pruned), None, pruned).ravel(), dtype="Int64"),
        "survival": np.where(np.isnan(pruned), bm.shape[0], pruned).astype(np.int64).ravel(),
        "censored": np.isnan(pruned).ravel()})


# ---- the death of frozen parameters ------------------------------------------------------------
DEATH_COLUMNS = ["seed", "param", "layer", "kind", "first_frozen_level", "frozen_levels",
                 "ranked_value", "predicted_death", "actual_death", "exact", "reason"]


@dataclass
class Deaths:
    """Every ticket parameter frozen at some level, followed level by level (docs/science.md §8).

    A parameter first frozen at level f is ranked at level f + 1 with its trained value v_{f+1}
    (= its start value, bit for bit, without weight decay). Had it stayed frozen, at every
    later level j it would be ranked with v_j: rewinding without weight decay θ_rewind;
    fine-tuning without weight decay its frozen value; with weight decay the decay-only
    trajectory (pipeline.engine.optim.decay_only) from θ_rewind (rewind) or from v_{j−1}
    (finetune) over the seed's optimizer steps of level j − 1. Predicted death: the first
    j > f with τ_j > |v_j| (none: predicted to survive); actual death: the first level with
    mask 0. A miss is explained by `unfroze` (the parameter was not frozen at some level
    between f and the earlier of the two deaths, so it was ranked with another value) or `tie`
    (pruned at |v_j| = τ_j: ranked equal to the last kept value, lost on the flat-index tie
    break). Parameters the pruning never ranks (biases under weights-only pruning) are not
    followed: they cannot die, so nothing about them is predicted."""

    run: RunInfo
    measured: bool = True
    seen: torch.Tensor | None = None
    net: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    param: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    first: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    count: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    ranked: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.float32))
    value: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.float32))
    pred: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    actual: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    unfroze: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    tie: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))

    def add(self, level: int, mask: torch.Tensor, theta: torch.Tensor,
            frozen: torch.Tensor | None, tau: np.ndarray, steps: np.ndarray | None) -> None:
        """Level `level` of the tickets: its mask, trained θ, frozen flags (None: not measured,
        and then nothing is followed), τ_level [K] and optimizer steps [K] (weight decay)."""
        if frozen is None or not self.measured:
            self.measured = False
            return
        if len(self.net):
            self._advance(level, mask, frozen, tau, steps)
        if self.seen is None:
            self.seen = torch.zeros_like(frozen)
        # only what the pruning ranks: a parameter it never ranks (a bias under weights-only
        # pruning) has no threshold to fall below, so no death to predict
        k, p = torch.nonzero(frozen & ~self.seen & self.run.prunable, as_tuple=True)
        self.seen |= frozen
        v = theta[k, p].numpy()
        n = len(k)
        self.net, self.param = np.concatenate([self.net, k.numpy()]), np.concatenate([self.param, p.numpy()])
        self.first = np.concatenate([self.first, np.full(n, level)])
        self.count = np.concatenate([self.count, np.ones(n, dtype=np.int64)])
        self.ranked = np.concatenate([self.ranked, np.abs(v)])
        self.value = np.concatenate([self.value, v])
        for name in ("pred", "actual", "unfroze"):
            setattr(self, name, np.concatenate([getattr(self, name), np.full(n, -1)]))
        self.tie = np.concatenate([self.tie, np.zeros(n, dtype=bool)])

    def _advance(self, level: int, mask: torch.Tensor, frozen: torch.Tensor, tau: np.ndarray,
                 steps: np.ndarray | None) -> None:
        """Compare the followed parameters' v_level with τ_level, note deaths and unfreezing, and
        move v on to the value ranked at the next level."""
        at = (torch.from_numpy(self.net), torch.from_numpy(self.param))
        unpruned, fz = mask[at].numpy(), frozen[at].numpy()
        absv, t = np.abs(self.value).astype(np.float64), tau[self.net]
        hit = (self.pred < 0) & (t > absv)
        self.pred[hit] = level
        dies = (self.actual < 0) & ~unpruned
        self.actual[dies] = level
        self.tie[dies] = absv[dies] == t[dies]
        self.count += fz & unpruned
        self.unfroze[(self.unfroze < 0) & unpruned & ~fz] = level
        self.value = self._next_value(steps)

    def _next_value(self, steps: np.ndarray | None) -> np.ndarray:
        """v for the next level of every followed parameter (see the class)."""
        run = self.run
        rewind = run.method == "rewind"
        if not run.train.weight_decay:
            return run.rewind[self.net, self.param].numpy() if rewind else self.value
        from pipeline.engine.optim import decay_only

        open_ = np.flatnonzero((self.pred < 0) | (self.actual < 0))
        out = self.value.copy()
        if not len(open_):
            return out
        start = (run.rewind[self.net[open_], self.param[open_]] if rewind
                 else torch.from_numpy(self.value[open_]))
        out[open_] = decay_only(run.train, start, torch.from_numpy(steps[self.net[open_]])).numpy()
        return out

    def frame(self) -> pd.DataFrame:
        """reports/analysis/frozen_deaths.csv.gz's rows, by seed and flat index (none where
        frozen was not measured)."""
        if not self.measured or not len(self.net):
            return pd.DataFrame({c: pd.Series(dtype=object) for c in DEATH_COLUMNS})
        order = np.lexsort((self.param, self.net))
        layout = self.run.layout
        pred, actual = self.pred[order], self.actual[order]
        return pd.DataFrame({
            "seed": np.asarray(self.run.seeds, dtype=np.int64)[self.net[order]],
            "param": self.param[order], "layer": layout.layer_index().numpy()[self.param[order]],
            "kind": np.where(layout.is_bias().numpy()[self.param[order]], "bias", "weight"),
            "first_frozen_level": self.first[order], "frozen_levels": self.count[order],
            "ranked_value": self.ranked[order],
            "predicted_death": pd.array(np.where(pred < 0, None, pred), dtype="Int64"),
            "actual_death": pd.array(np.where(actual < 0, None, actual), dtype="Int64"),
            "exact": pred == actual, "reason": self.reasons()[order]})

    def reasons(self) -> np.ndarray:
        """Per followed parameter: "" where the prediction is exact or unexplained, else
        `unfroze` or `tie` (see the class)."""
        big = np.iinfo(np.int64).max
        until = np.minimum(np.where(self.pred < 0, big, self.pred),
                           np.where(self.actual < 0, big, self.actual))
        unfroze = (self.unfroze >= 0) & (self.unfroze < until)
        miss = self.pred != self.actual
        return np.where(miss & unfroze, "unfroze", np.where(miss & self.tie, "tie", ""))


def write_csv_gz(path, frame: pd.DataFrame) -> None:
    """frame as gzip-compressed CSV (the float format of pipeline.io.write_csv) with a fixed
    mtime and no file name in the header, so reruns give identical bytes. Written inside the
    analyze stage's atomic folder."""
    import io as _io
    from pathlib import Path

    text = frame.to_csv(index=False, float_format="%.6g", lineterminator="\n").encode()
    buffer = _io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buffer, mtime=0, compresslevel=1) as f:
        f.write(text)
    Path(path).write_bytes(buffer.getvalue())


def train_config(optimizer: str, lr: float, momentum: float, weight_decay: float,
                 batch_size: int | None, restore_best: bool) -> TrainConfig:
    """The TrainConfig the dying analysis reads (decay_only's optimizer, steps per level)."""
    return dataclasses.replace(TrainConfig(), optimizer=optimizer, lr=lr, momentum=momentum,
                               weight_decay=weight_decay, batch_size=batch_size,
                               restore_best=restore_best)
