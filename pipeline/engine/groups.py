"""A population made of groups of networks, each group trained by its own population object.

The live path puts every network, by its own plan, either into the per-network loop
(engine.live.LivePopulation: wide networks, whose own matmuls dominate) or into the block of
small networks computed together (engine.blockdiag.BlockPopulation). Networks never interact, so
the epoch loop (engine.loop) sees one population: this class hands every call to the groups and
puts their per-network results back in the population's order.
"""
from __future__ import annotations

import numpy as np
import torch


class Groups:
    """The population of networks 0…K−1, group g training the networks `members[g]` (sorted
    positions in the current population) with population object `pops[g]`."""

    def __init__(self, members: list[np.ndarray], pops: list):
        parts = [(m, p) for m, p in zip(members, pops) if len(m)]
        self.members, self.pops = [m for m, _ in parts], [p for _, p in parts]
        self.k = sum(len(m) for m in self.members)
        self.val_monitor0 = self._merge([p.val_monitor0 for p in self.pops])

    def _merge(self, values: list[torch.Tensor]) -> torch.Tensor:
        """Per-network values [n_g, ...] of every group → [K, ...] in population order."""
        out = values[0].new_empty((self.k, *values[0].shape[1:]))
        for m, v in zip(self.members, values):
            out[torch.from_numpy(m).to(v.device)] = v
        return out

    def _calls(self, name: str, *args):
        return [getattr(p, name)(*args) for p in self.pops]

    def train_epoch(self) -> tuple[torch.Tensor, torch.Tensor]:
        parts = self._calls("train_epoch")
        return self._merge([a for a, _ in parts]), self._merge([b for _, b in parts])

    def validate(self) -> tuple[torch.Tensor, torch.Tensor]:
        parts = self._calls("validate")
        return self._merge([a for a, _ in parts]), self._merge([b for _, b in parts])

    def remember(self, improved: np.ndarray) -> None:
        for m, p in zip(self.members, self.pops):
            p.remember(improved[m])

    def _select(self, name: str, rows: np.ndarray | None, **kw) -> torch.Tensor:
        """[n, P] of the networks `rows` (bool [K]; all: None), in population order."""
        rows = np.ones(self.k, dtype=bool) if rows is None else rows
        parts, order = [], []
        for m, p in zip(self.members, self.pops):
            sub = rows[m]
            if sub.any():
                parts.append(getattr(p, name)(sub, **kw))
                order.append(m[sub])
        out = torch.cat(parts)
        return out[torch.from_numpy(np.argsort(np.concatenate(order), kind="stable")).to(out.device)]

    def weights(self, rows: np.ndarray | None = None, best: bool = False) -> torch.Tensor:
        return self._select("weights", rows, best=best)

    def frozen(self, rows: np.ndarray | None = None) -> torch.Tensor:
        return self._select("frozen", rows)

    def keep(self, keep: np.ndarray) -> None:
        """Go on with the networks `keep` (bool [K]) only."""
        new_pos = np.cumsum(keep) - 1
        members, pops = [], []
        for m, p in zip(self.members, self.pops):
            sub = keep[m]
            if sub.any():
                if not sub.all():
                    p.keep(sub)
                members.append(new_pos[m[sub]])
                pops.append(p)
        self.members, self.pops, self.k = members, pops, int(keep.sum())
