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


def forward(layout: Layout, theta: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Logits [K, N, n_out] for inputs x [N, n_in] (shared) or [K, N, n_in] (per network).

    Pruned entries are exactly zero in theta (the trainer keeps them so), so no mask multiply
    is needed here.
    """
    views = layout.views(theta)
    h = x
    for i, (w, b) in enumerate(views):
        h = torch.matmul(h, w.transpose(1, 2)) + b.unsqueeze(1)
        if i < len(views) - 1:
            h = torch.relu(h)
    return h
