"""A population of K masked MLPs of one shape, stored as one flat parameter matrix.

All parameters of network k live in row k of `theta` [K, P]: layer 0's weight (row-major
[out, in]), layer 0's bias, layer 1's weight, … . One tensor means one Adam update, one
early-stopping copy and one global magnitude ranking per step for the whole population,
whatever the depth. Masks are plain boolean tensors of the same shape.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import torch

from pipeline.config import ModelConfig


@dataclass(frozen=True)
class Layout:
    """Where each layer's weight and bias sit in the flat parameter vector."""

    layers: tuple[int, ...]

    @property
    def depth(self) -> int:  # number of weight matrices
        return len(self.layers) - 1

    @functools.cached_property  # read on every training step through views()
    def offsets(self) -> list[tuple[int, int, int]]:
        """Per weight matrix: (weight start, bias start, bias end)."""
        out, pos = [], 0
        for n_in, n_out in zip(self.layers[:-1], self.layers[1:]):
            w = pos
            b = w + n_in * n_out
            pos = b + n_out
            out.append((w, b, pos))
        return out

    @property
    def size(self) -> int:
        return self.offsets[-1][2]

    def views(self, theta: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """(weight [K, out, in], bias [K, out]) views into theta [K, P]."""
        k = theta.shape[0]
        out = []
        for (w, b, e), n_in, n_out in zip(self.offsets, self.layers[:-1], self.layers[1:]):
            out.append((theta[:, w:b].view(k, n_out, n_in), theta[:, b:e]))
        return out

    def is_bias(self) -> torch.Tensor:
        """Bool [P]: True where the flat entry is a bias."""
        flags = torch.zeros(self.size, dtype=torch.bool)
        for _, b, e in self.offsets:
            flags[b:e] = True
        return flags

    def prunable(self, biases: bool) -> torch.Tensor:
        """Bool [P]: entries that take part in magnitude pruning."""
        return torch.ones(self.size, dtype=torch.bool) if biases else ~self.is_bias()

    def layer_index(self) -> torch.Tensor:
        """Long [P]: which weight matrix (0 = input→first hidden) each entry belongs to."""
        idx = torch.empty(self.size, dtype=torch.long)
        for i, (w, _, e) in enumerate(self.offsets):
            idx[w:e] = i
        return idx

    # ---- checkpoint contract: layers.{i}.weight / bias / weight_mask / bias_mask -------------
    def to_state(self, theta: torch.Tensor, mask: torch.Tensor | None = None,
                 prefix: str = "") -> dict[str, torch.Tensor]:
        state = {}
        for i, (w, b) in enumerate(self.views(theta)):
            state[f"{prefix}layers.{i}.weight"] = w.detach().clone().contiguous()
            state[f"{prefix}layers.{i}.bias"] = b.detach().clone().contiguous()
        if mask is not None:
            for i, (w, b) in enumerate(self.views(mask)):
                state[f"{prefix}layers.{i}.weight_mask"] = w.clone().contiguous()
                state[f"{prefix}layers.{i}.bias_mask"] = b.clone().contiguous()
        return state

    def from_state(self, state: dict[str, torch.Tensor], prefix: str = "",
                   masks: bool = False) -> torch.Tensor:
        """theta [K, P] (or the mask, with masks=True) from a checkpoint dict."""
        w_key, b_key = ("weight_mask", "bias_mask") if masks else ("weight", "bias")
        parts = []
        for i in range(self.depth):
            w = state[f"{prefix}layers.{i}.{w_key}"]
            parts += [w.reshape(w.shape[0], -1), state[f"{prefix}layers.{i}.{b_key}"]]
        return torch.cat(parts, dim=1)


@dataclass(frozen=True)
class Compaction:
    """The same population in its canonical compact layout: per network, the hidden neurons that
    can affect training first (in their original order), then zero padding.

    `index` [K, P'] gives, for each entry of the compacted flat layout, its flat position in
    the full layout; `valid` [K, P'] is False on padding slots, whose weights, biases and masks
    are zero; `kept` [K, H] is each network's number of kept neurons per hidden layer.
    """

    layout: Layout
    index: torch.Tensor
    valid: torch.Tensor
    kept: torch.Tensor

    def gather(self, full: torch.Tensor) -> torch.Tensor:
        """[K, P] → [K, P'] (zeros, or False, on padding slots)."""
        part = full.gather(1, self.index)
        return part & self.valid if part.dtype == torch.bool else part * self.valid

    def scatter(self, part: torch.Tensor, full: torch.Tensor) -> torch.Tensor:
        """A copy of `full` [K, P] with the compacted entries replaced by `part` [K, P']."""
        out = full.clone()
        rows = torch.arange(full.shape[0]).unsqueeze(1).expand_as(self.index)
        out[rows[self.valid], self.index[self.valid]] = part[self.valid]
        return out


def kept_neurons(layout: Layout, mask: torch.Tensor) -> list[torch.Tensor]:
    """Per hidden layer [K, width] bool: the neuron is on a path from an input feature or an
    unpruned bias (it can be nonzero) and on a path of unpruned weights to an output."""
    k = mask.shape[0]
    views = layout.views(mask)
    depth = layout.depth
    sourced = [torch.ones(k, layout.layers[0], dtype=torch.bool)]
    for w, b in views[:-1]:
        sourced.append(b | (w & sourced[-1].unsqueeze(1)).any(dim=2))
    productive = {depth: torch.ones(k, layout.layers[-1], dtype=torch.bool)}
    for layer in range(depth - 1, 0, -1):
        productive[layer] = (views[layer][0] & productive[layer + 1].unsqueeze(2)).any(dim=1)
    return [sourced[layer] & productive[layer] for layer in range(1, depth)]


_kept_neurons = kept_neurons  # the former private name


# Canonical hidden widths are multiples of 8 and at least 16. Measured on this CPU's BLAS
# (benchmarks/README.md): appending zero neurons in steps of 8 to such a width leaves every bit
# of the batched matmuls unchanged, while other widths (8, odd ones) are rounded by other
# kernels. So a network computes the same bits whatever wider networks share its batch.
WIDTH_STEP, MIN_WIDTH = 8, 16
# A single logit makes the last matmul a matrix-vector product, whose rounding does depend on
# the padded width: one zero logit is appended (it is not part of any task's loss). Matmuls with
# fewer than 13 rows (a mini-batch's last one) can still round by width for 2–11 outputs.
MIN_OUTPUTS = 2


def canonical_width(kept: torch.Tensor | int) -> torch.Tensor | int:
    """The padded width a layer with `kept` neurons is trained at: ⌈kept/8⌉·8, at least 16."""
    if isinstance(kept, int):
        return max(MIN_WIDTH, -(-kept // WIDTH_STEP) * WIDTH_STEP)
    return (-(-kept // WIDTH_STEP) * WIDTH_STEP).clamp(min=MIN_WIDTH)


def population_widths(kept: torch.Tensor) -> tuple[int, ...]:
    """Hidden widths that hold every network of `kept` [K, H] in its canonical width."""
    return tuple(int(w) for w in canonical_width(kept).max(dim=0).values)


def compaction(layout: Layout, mask: torch.Tensor) -> Compaction | None:
    """Drop, per network, the hidden neurons whose parameters training cannot change and whose
    output cannot change any kept neuron: neurons with no path from an input feature or an
    unpruned bias (their output is exactly 0), and neurons with no path to an output (their
    gradient is exactly 0). Everything such a neuron touches gets an exactly-zero gradient, so
    Adam and SGD leave those parameters at their starting values; the kept neurons see the
    same sums without the zero terms.

    Every network is laid out canonically — its kept neurons first, in order, then zeros up to
    its own canonical width (canonical_width) — and the batch is padded with zero neurons to
    the widest network. Trailing zero neurons in steps of 8 change no bit of the matmuls, so a
    network's arithmetic depends on its own mask only: not on which networks share its batch,
    worker or run (tests check this). Returns None when the canonical layout is the full one
    (nothing dropped, full widths already canonical).
    """
    k = mask.shape[0]
    keep = kept_neurons(layout, mask)
    kept = (torch.stack([kp.sum(dim=1) for kp in keep], dim=1) if keep
            else torch.zeros(k, 0, dtype=torch.long))
    widths = list(population_widths(kept)) if keep else []
    n_out = layout.layers[-1]
    out_width = max(n_out, MIN_OUTPUTS)
    if (widths == list(layout.layers[1:-1]) and all(bool(kp.all()) for kp in keep)
            and out_width == n_out):
        return None
    # per node layer: [K, width'] original neuron index of each slot and whether it is real
    maps, real = [torch.arange(layout.layers[0]).expand(k, -1)], [None]
    for kp, width in zip(keep, widths):
        order = torch.argsort((~kp).to(torch.uint8), dim=1, stable=True)  # kept first, in order
        if width > order.shape[1]:  # wider than the layer: padding slots point at neuron 0
            order = torch.cat([order, order.new_zeros(k, width - order.shape[1])], dim=1)
        maps.append(order[:, :width])
        real.append(torch.arange(width) < kp.sum(dim=1, keepdim=True))
    outputs = torch.arange(out_width).clamp(max=n_out - 1)  # padding slots point at output 0
    maps.append(outputs.expand(k, -1))
    real.append(None if out_width == n_out else (torch.arange(out_width) < n_out).expand(k, -1))
    index, valid = [], []
    for i, (w_start, b_start, _) in enumerate(layout.offsets):
        n_in = layout.layers[i]
        src, dst = maps[i], maps[i + 1]
        index.append((w_start + dst.unsqueeze(2) * n_in + src.unsqueeze(1)).reshape(k, -1))
        index.append(b_start + dst)
        ok_src = real[i] if real[i] is not None else torch.ones_like(src, dtype=torch.bool)
        ok_dst = real[i + 1] if real[i + 1] is not None else torch.ones_like(dst, dtype=torch.bool)
        valid.append((ok_dst.unsqueeze(2) & ok_src.unsqueeze(1)).reshape(k, -1))
        valid.append(ok_dst)
    small = Layout((layout.layers[0], *widths, out_width))
    return Compaction(small, torch.cat(index, dim=1), torch.cat(valid, dim=1), kept)


def resize(layout: Layout, target: Layout, theta: torch.Tensor) -> torch.Tensor:
    """theta [K, P] of `layout` in `target` (same depth, other widths): each layer's
    leading block copied, the rest zero. Exact for canonical layouts, whose dropped slots are
    trailing zeros."""
    parts = []
    for (w, b), (n_in, n_out) in zip(layout.views(theta),
                                     zip(target.layers[:-1], target.layers[1:])):
        w_new = w.new_zeros(w.shape[0], n_out, n_in)
        i, o = min(n_in, w.shape[2]), min(n_out, w.shape[1])
        w_new[:, :o, :i] = w[:, :o, :i]
        b_new = b.new_zeros(b.shape[0], n_out)
        b_new[:, :o] = b[:, :o]
        parts += [w_new.reshape(w.shape[0], -1), b_new]
    return torch.cat(parts, dim=1)


def layers_from_state(state: dict[str, torch.Tensor]) -> tuple[int, ...]:
    """Layer sizes of the networks in a checkpoint dict."""
    sizes, i = [], 0
    while f"layers.{i}.weight" in state:
        w = state[f"layers.{i}.weight"]
        if i == 0:
            sizes.append(w.shape[2])
        sizes.append(w.shape[1])
        i += 1
    return tuple(sizes)


def _draw(kind: str, scale: float, shape: tuple[int, ...], g: torch.Generator) -> torch.Tensor:
    if kind == "normal":
        return torch.randn(shape, generator=g) * scale
    if kind == "uniform":
        return (torch.rand(shape, generator=g) * 2 - 1) * scale
    return torch.zeros(shape)


def init_network(layout: Layout, cfg: ModelConfig, seed: int) -> torch.Tensor:
    """θ₀ of one network [P], drawn from its own generator so it does not depend on K."""
    g = torch.Generator().manual_seed(int(seed))
    parts = []
    for n_in, n_out in zip(layout.layers[:-1], layout.layers[1:]):
        default_bound = 1.0 / math.sqrt(n_in)  # nn.Linear: kaiming_uniform(a=√5) = U(±1/√fan_in)
        weight = {
            "torch_default": ("uniform", default_bound),
            "normal": ("normal", cfg.init_std),
            "kaiming_normal": ("normal", math.sqrt(2.0 / n_in)),
            "kaiming_uniform": ("uniform", math.sqrt(6.0 / n_in)),
            "xavier_normal": ("normal", math.sqrt(2.0 / (n_in + n_out))),
        }[cfg.init]
        bias = {
            "default": ("uniform", default_bound),
            "zero": ("zero", 0.0),
            "normal": ("normal", cfg.bias_std),
            "uniform": ("uniform", cfg.bias_std),
        }[cfg.bias_init]
        parts.append(_draw(*weight, (n_out * n_in,), g))
        parts.append(_draw(*bias, (n_out,), g))
    return torch.cat(parts)


def init_population(layout: Layout, cfg: ModelConfig, seeds) -> torch.Tensor:
    """θ₀ of K networks [K, P]."""
    return torch.stack([init_network(layout, cfg, s) for s in seeds])


def output_layer(a: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Logits [K, N, O] (a transposed view) of the last layer: a [K, N, W], w [K, O, W], b [K, O].

    Computed as w·aᵀ + b, not a·wᵀ + b: with few outputs the first has O rows and N columns, which
    this CPU's BLAS runs 2× faster than N rows of O columns (benchmarks/README.md). Every
    forward pass (training, validation, evaluation) goes through here, so they round alike.
    w is copied first: as the left operand its rounding depends on its address, which in a
    view of theta depends on the network's place in the batch. In the copy every row starts on
    a 64-byte boundary, whatever the width and the network's place."""
    k, n_out, width = w.shape
    w = w.new_empty(k, n_out, -(-width // 16) * 16)[..., :width].copy_(w)
    return torch.baddbmm(b.unsqueeze(2), w, a.transpose(1, 2)).transpose(1, 2)


def forward(layout: Layout, theta: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Logits [K, N, n_out] for inputs x [N, n_in] (shared) or [K, N, n_in] (per network).

    Pruned entries are exactly zero in theta (the trainer keeps them so), so no mask multiply
    is needed here.
    """
    views = layout.views(theta)
    h = x.expand(theta.shape[0], *x.shape) if x.dim() == 2 else x
    for w, b in views[:-1]:
        h = torch.relu(torch.baddbmm(b.unsqueeze(1), h, w.transpose(1, 2)))
    return output_layer(h, *views[-1])
