"""Pruning trajectory and network extension (docs/science.md §3).

Pure Python on purpose: the config validator needs P_0 before any heavy import.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass


def round_half_up(x: float) -> int:
    """Nearest integer, halves rounded up (Python's round() rounds halves to even)."""
    return int(math.floor(x + 0.5))


def param_count(layers: list[int] | tuple[int, ...], biases: bool = True) -> int:
    """Prunable parameters of an MLP with these layer sizes: weights, plus biases if prunable."""
    weights = sum(a * b for a, b in zip(layers[:-1], layers[1:]))
    return weights + (sum(layers[1:]) if biases else 0)


def keep_ratio(p0: int, target: int, iterations: int) -> float:
    """Per-level keep ratio q = (P_T / P_0)^(1/T)."""
    return (target / p0) ** (1.0 / iterations)


def base_trajectory(p0: int, iterations: int, target: int | None = None,
                    rate: float | None = None) -> list[int]:
    """[P_0, …, P_T] with P_k = round(P_0 · q^k); P_T is exactly the target when one is given."""
    if (target is None) == (rate is None):
        raise ValueError("give exactly one of target and rate")
    q = keep_ratio(p0, target, iterations) if target is not None else 1.0 - rate
    counts = [round_half_up(p0 * q**k) for k in range(iterations + 1)]
    counts[0] = p0
    if target is not None:
        counts[-1] = target
    return counts


def extended_width(n_in: int, n_out: int, depth: int, params: float, biases: bool) -> int:
    """Common hidden width h of a net [n_in, h × depth, n_out] with about `params` parameters.

    Solves (depth−1)·h² + (n_in + n_out + depth·b)·h + b·n_out − P = 0 with b = 1 if biases are
    prunable, and rounds h to the nearest integer (at least 1).
    """
    b = 1 if biases else 0
    qa = depth - 1
    qb = n_in + n_out + depth * b
    qc = b * n_out - params
    if qa == 0:
        h = -qc / qb
    else:
        h = (-qb + math.sqrt(qb * qb - 4 * qa * qc)) / (2 * qa)
    return max(1, round_half_up(h))


@dataclass(frozen=True)
class Trajectory:
    """Shape to train densely and the parameter count of every level, levels −k…T."""

    layers: list[int]          # shape S_{−k} that the dense net has
    base_layers: list[int]     # base shape S_0
    extensions: int            # k
    levels: list[int]          # −k … T
    params: list[int]          # prunable parameters at each level

    @property
    def rates(self) -> list[float]:
        """Realised per-level pruning rate 1 − P_k / P_{k−1} (0 for the first level)."""
        out = [0.0]
        for prev, cur in zip(self.params[:-1], self.params[1:]):
            out.append(1.0 - cur / prev)
        return out


def plan(n_in: int, n_out: int, hidden: list[int] | tuple[int, ...], iterations: int,
         target: int | None, rate: float | None, extensions: int, biases: bool) -> Trajectory:
    """Full trajectory [P_{−k}, …, P_0, …, P_T] and the extended shape S_{−k}."""
    base_layers = [n_in, *hidden, n_out]
    p0 = param_count(base_layers, biases)
    counts = base_trajectory(p0, iterations, target, rate)
    q = keep_ratio(p0, target, iterations) if target is not None else 1.0 - rate
    layers = base_layers
    pre: list[int] = []
    if extensions > 0:
        # growing rate g = 1/(1−p) − 1, so P_{−j} = P_0 (1+g)^j = P_0 / q^j
        width = extended_width(n_in, n_out, len(hidden), p0 / q**extensions, biases)
        layers = [n_in, *([width] * len(hidden)), n_out]
        pre = [param_count(layers, biases)]
        pre += [round_half_up(p0 / q**j) for j in range(extensions - 1, 0, -1)]
    params = pre + counts
    return Trajectory(layers=layers, base_layers=base_layers, extensions=extensions,
                      levels=list(range(-extensions, iterations + 1)), params=params)


def read_csv(path: str | os.PathLike) -> tuple[list[int], list[int]]:
    """(levels, prunable parameters per level) from reports/trajectory.csv, as the trajectory
    stage wrote them (level order, extended levels negative). A damaged or foreign file raises
    io.ReadError naming it."""
    from pipeline import io

    frame = io.read_csv(path, required=("level", "params"))
    with io.reading(path):  # not integers: ValueError, a float NaN: IntCastingNaNError
        levels, params = frame["level"].astype(int).tolist(), frame["params"].astype(int).tolist()
    if not levels or levels != list(range(levels[0], levels[0] + len(levels))):
        raise io.read_error(path, "its levels are not consecutive")
    return levels, params


def read_shape(path: str | os.PathLike) -> tuple[int, ...]:
    """The layer sizes in models/shape.json, as the trajectory stage wrote them. A damaged or
    foreign file raises io.ReadError naming it."""
    from pipeline import io

    layers = io.read_json(path, required=("layers",))["layers"]
    if not (isinstance(layers, list) and len(layers) >= 2
            and all(isinstance(n, int) and not isinstance(n, bool) and n >= 1 for n in layers)):
        raise io.read_error(path, "layers is not a list of layer sizes")
    return tuple(layers)
