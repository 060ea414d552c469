"""Level files whose size follows the live weights (imp.pack_level / load_level): readable with
torch.load(weights_only=True), read back by load_level as exactly the dense dict of the
checkpoint contract, unchanged (byte for byte) for small layouts."""
from __future__ import annotations

import pytest
import torch

from pipeline import imp, io
from pipeline.model import Layout


def dense_state(layout: Layout, density: float, k: int = 3, controls: bool = True) -> dict:
    g = torch.Generator().manual_seed(1)
    state = {"seeds": torch.arange(k)}
    for prefix in ("", *(("reinit.", "random.") if controls else ())):
        mask = torch.rand(k, layout.size, generator=g) < density
        mask[0, :5] = True  # a few survivors whose value is exactly 0 (a dead, unmoved bias)
        theta = torch.randn(k, layout.size, generator=g) * mask
        theta[0, :5] = 0.0
        state.update(layout.to_state(theta, mask, prefix))
        state[f"{prefix}metrics.test_loss"] = torch.rand(k, generator=g)
        state[f"{prefix}metrics.frozen"] = mask & (torch.rand(k, layout.size, generator=g) < 0.3)
        state[f"{prefix}curves.val_loss"] = torch.rand(k, 7, generator=g)
    return state


@pytest.mark.parametrize("density", [0.9, 0.2, 0.01, 0.0005])
def test_packed_level_reads_back_as_the_dense_dict(tmp_path, density):
    layout = Layout((1568, 48, 20))  # 76 k parameters: packed
    state = dense_state(layout, density)
    path = tmp_path / "level_03.pt"
    imp.save_level(path, state, layout)
    raw = torch.load(path, weights_only=True)  # the contract: plain tensors only
    assert imp.PACKED_KEY in raw and "layers.0.weight" not in raw
    assert ("live.index" in raw) == (density < 1 / 32)
    back = imp.load_level(path)
    assert sorted(back) == sorted(state)
    for key, value in state.items():
        assert back[key].dtype == value.dtype and torch.equal(back[key], value), key


def test_packed_files_follow_the_live_weights(tmp_path):
    layout = Layout((1568, 784, 392, 20))
    sizes = {}
    for density in (1.0, 0.2, 0.02, 0.0004):
        state = dense_state(layout, density, k=1, controls=False)
        io.save_tensors(tmp_path / "dense.pt", state)
        imp.save_level(tmp_path / "packed.pt", state, layout)
        sizes[density] = ((tmp_path / "packed.pt").stat().st_size,
                          (tmp_path / "dense.pt").stat().st_size)
    assert sizes[1.0][0] < sizes[1.0][1]           # bitmap + values < weights + byte masks
    assert sizes[0.2][0] < sizes[0.2][1] / 4
    assert sizes[0.02][0] < sizes[0.02][1] / 30
    assert sizes[0.0004][0] < 20_000                # 600 survivors: indices + values


def test_a_frozen_entry_off_the_mask_is_refused():
    """The frozen record is stored at the survivors only: a frozen pruned entry would be lost."""
    layout = Layout((1568, 48, 20))
    state = dense_state(layout, 0.2)
    mask = layout.from_state(state, masks=True)
    state["metrics.frozen"] = state["metrics.frozen"] | ~mask
    with pytest.raises(ValueError, match="frozen"):
        imp.pack_level(state, layout)


def test_small_layouts_keep_the_dense_format_byte_for_byte(tmp_path):
    layout = Layout((4, 40, 40, 2))  # the default run's level files do not change
    state = dense_state(layout, 0.3)
    assert imp.pack_level(state, layout) is state
    imp.save_level(tmp_path / "a.pt", state, layout)
    io.save_tensors(tmp_path / "b.pt", state)
    assert (tmp_path / "a.pt").read_bytes() == (tmp_path / "b.pt").read_bytes()
    assert imp.load_level(tmp_path / "a.pt").keys() == state.keys()


def test_weights_off_the_mask_are_refused():
    layout = Layout((1568, 48, 20))
    state = dense_state(layout, 0.1, k=1, controls=False)
    state["layers.0.weight"][0, 0, 0], state["layers.0.weight_mask"][0, 0, 0] = 1.0, False
    with pytest.raises(ValueError, match="off the mask"):
        imp.pack_level(state, layout)
