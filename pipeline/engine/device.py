"""train.device → a torch device: one small module that loop.py and live.py both import, so
that neither imports the other (loop chooses the live path; live needs the device)."""
from __future__ import annotations

import torch


def resolve_device(name: str) -> torch.device:
    """train.device → a torch device: `auto` is CUDA when one is available, else the CPU."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        from pipeline.config import ConfigError
        raise ConfigError("train.device: 'cuda' is not allowed here; allowed: cpu or auto "
                          "(no CUDA device is available)")
    return torch.device(name)
