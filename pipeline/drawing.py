"""Network drawings that show the modules: one seed's net at one or many IMP levels.

Hidden neurons are ordered so that each task's subnetwork occupies its own horizontal band
(task membership of the alive subgraph, docs/science.md §5–6: which tasks' inputs reach a neuron
and which tasks' outputs it reaches), and within a band by the mean position of their inputs.
The order is computed once, from a reference level (the first split level, else the last), and
kept for every level of the seed, so panels and animation frames can be compared.

Edges: alive weights in the colour of their task; cross-task weights (alive weights on a path
from an input of task s to an output of task t ≠ s, the set E_× of docs/science.md §6) in one alarm
colour; audience (dashed), zombie (dotted) and unproductive (thin) weights in greys; width ∝ |w|.
Neurons outside the alive subgraph are faded. Image tasks are drawn as a pixel map per task
(which pixels still reach an output, and whose) instead of hundreds of input nodes.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from matplotlib.animation import FuncAnimation, PillowWriter  # noqa: E402
from matplotlib.collections import LineCollection  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402

from pipeline import graph, io, palette  # noqa: E402
from pipeline.config import IMAGE_KINDS  # noqa: E402
from pipeline.data import TaskInfo  # noqa: E402
from pipeline.model import Layout, layers_from_state  # noqa: E402

# colours from the one palette (pipeline.palette): tasks Okabe–Ito, cross-task vermillion
TASK_COLORS = palette.TASK_COLORS
CROSS_COLOR = palette.CROSS_TASK
STATE_STYLES = {graph.AUDIENCE: (palette.STATE_COLORS["audience"], "--"),
                graph.ZOMBIE: (palette.STATE_COLORS["zombie"], ":"),
                graph.UNPRODUCTIVE: (palette.STATE_COLORS["unproductive"], "-")}
FADED = "0.88"
LINESTYLE_OF_STATE = np.array(["-"] * 5, dtype=object)
for _code, (_, _ls) in STATE_STYLES.items():
    LINESTYLE_OF_STATE[_code] = _ls


def task_color(t: int) -> str:
    """Colour of task t's inputs, outputs, neurons and alive weights (palette.task_color)."""
    return palette.task_color(t)


@dataclass
class NetView:
    """One network at one level, everything the drawing needs (numpy).

    layers: node counts per layer [n_0, …, n_L]; weights[i], states[i], cross[i]: [n_{i+1}, n_i]
    (value, state code of graph.STATES, cross-task flag) of the weight matrix from layer i to
    layer i+1; fwd[l], bwd[l]: [n_l, T] bool, which tasks' inputs reach node l (forward) and
    which tasks' outputs it reaches (backward), along unpruned weights.
    """

    layers: list[int]
    weights: list[np.ndarray]
    states: list[np.ndarray]
    cross: list[np.ndarray]
    fwd: list[np.ndarray]
    bwd: list[np.ndarray]

    def alive_neurons(self, layer: int) -> np.ndarray:
        """[n_l] bool: on the alive subgraph (reached from an input and reaching an output)."""
        return self.fwd[layer].any(axis=1) & self.bwd[layer].any(axis=1)

    def membership(self, layer: int) -> np.ndarray:
        """[n_l, T] bool: tasks whose inputs reach the node or whose outputs it reaches."""
        return self.fwd[layer] | self.bwd[layer]


def net_view(state: dict[str, torch.Tensor], seed: int, tasks: list[TaskInfo]) -> NetView:
    """The NetView of `seed` in a level checkpoint dict (models/imp/level_XX.pt)."""
    k = state["seeds"].tolist().index(seed)
    layout = Layout(layers_from_state(state))
    mask = layout.from_state(state, masks=True)[k:k + 1]
    theta = layout.from_state(state)[k:k + 1]
    res = graph.analyze(layout, mask, theta, tasks)
    wmasks = [wm for wm, _ in layout.views(mask)]
    ein, eout = graph.task_indicators(tasks, layout.layers[0], layout.layers[-1])
    fwd, bwd = graph.task_reach(wmasks, ein, eout)
    cross = graph.cross_task_weights(wmasks, fwd, bwd)
    return NetView(layers=list(layout.layers),
                   weights=[w[0].numpy() for w, _ in layout.views(theta)],
                   states=[s[0].numpy() for s, _ in layout.views(res.state)],
                   cross=[c[0].numpy() for c in cross],
                   fwd=[f[0].numpy() for f in fwd], bwd=[b[0].numpy() for b in bwd])


# ---- layout -------------------------------------------------------------------------------------
def reference_level(first_split: int | None, n_levels: int) -> int:
    """The level whose subnetworks define the layout: the first split, else the last level."""
    return n_levels - 1 if first_split is None else int(first_split)


def neuron_order(ref: NetView, history: list[NetView] | None = None) -> list[np.ndarray]:
    """Per layer, the drawing order of its nodes (a permutation; position 0 is drawn on top).

    Inputs and outputs keep their (task-ordered) index order. Hidden neurons are grouped into
    bands by their task membership at the reference level: band of task s = neurons touched by
    task s only; neurons touched by tasks s < … (shared) sit just below the band of their lowest
    task. Neurons off the alive subgraph at the reference level take the membership they had at
    the latest level in `history` (newest first) where they were alive and sit on their band's
    side towards the middle of the layer (or in the middle), so the bands stay apart; zombie
    and comatose neurons go with the tasks they feed or hear.
    Within a group, neurons are sorted by the mean drawing position of the nodes feeding them
    (unpruned weights at the reference level), then by index.
    """
    history = history or []
    t = ref.fwd[0].shape[1]
    middle = 2 * max((t + 1) // 2 - 1, 0) + 1  # after the upper half of the task bands
    orders = [np.arange(ref.layers[0])]
    for layer in range(1, len(ref.layers) - 1):
        n = ref.layers[layer]
        member = ref.membership(layer)
        alive = ref.alive_neurons(layer)
        group = np.full(n, float(middle) + 0.5)
        died = np.zeros(n)  # for neurons off the alive subgraph: levels since they had a task
        for j in range(n):
            if alive[j]:
                tasks = np.flatnonzero(member[j])
            else:  # a zombie goes with the tasks it feeds, a comatose neuron with its inputs'
                tasks = np.flatnonzero(ref.bwd[layer][j] if ref.bwd[layer][j].any()
                                       else ref.fwd[layer][j])
            lag = 0
            if not len(tasks):
                for lag, view in enumerate(history, start=1):
                    if view.alive_neurons(layer)[j]:
                        tasks = np.flatnonzero(view.membership(layer)[j])
                        break
            if len(tasks) == 1:  # the band's former members on its side towards the middle
                upper = 2 * tasks[0] < middle
                group[j] = 2 * tasks[0] + (0.0 if alive[j] else 0.5 if upper else -0.5)
            elif len(tasks) > 1:
                group[j] = 2 * tasks[0] + 1
            died[j] = lag if not alive[j] else 0
        prev_pos = np.empty(ref.layers[layer - 1])
        prev_pos[orders[-1]] = np.arange(len(orders[-1]))
        feeds = ref.states[layer - 1] != graph.PRUNED  # [n, n_prev]
        counts = feeds.sum(axis=1)
        bary = np.where(counts > 0, (feeds * prev_pos).sum(axis=1) / np.maximum(counts, 1), n)
        orders.append(np.lexsort((np.arange(n), bary, died, group)))
    orders.append(np.arange(ref.layers[-1]))
    return orders


def image_shape(task: TaskInfo) -> tuple[int, int]:
    """Pixel grid of an image task's inputs (square images; digits 8 × 8)."""
    n = len(task.inputs)
    side = int(round(n ** 0.5))
    return (side, side) if side * side == n else (1, n)


def input_groups(tasks: list[TaskInfo]) -> list[tuple[int, np.ndarray]]:
    """(task, input indices) per drawn input unit: one per pixel map of an image task, one per
    feature of the other tasks."""
    out = []
    for ti, t in enumerate(tasks):
        if t.kind in IMAGE_KINDS:
            out.append((ti, np.asarray(t.inputs)))
        else:
            out += [(ti, np.array([i])) for i in t.inputs]
    return out


def _aggregate_inputs(view: NetView, groups) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """First weight matrix with one column per input group: |w| summed over the group's
    unpruned weights, the most alive state among them, cross if any of them is."""
    w, st, cr = view.weights[0], view.states[0], view.cross[0]
    n = w.shape[0]
    agg_w = np.zeros((n, len(groups)))
    agg_s = np.full((n, len(groups)), graph.PRUNED, dtype=st.dtype)
    agg_c = np.zeros((n, len(groups)), dtype=bool)
    for g, (_, cols) in enumerate(groups):
        live = st[:, cols] != graph.PRUNED
        agg_w[:, g] = np.where(live, np.abs(w[:, cols]), 0).sum(axis=1)
        agg_s[:, g] = np.where(live, st[:, cols], graph.PRUNED).min(axis=1)
        agg_c[:, g] = (cr[:, cols] & live).any(axis=1)
    return agg_w, agg_s, agg_c


def _positions(counts: list[int]) -> list[np.ndarray]:
    """y of each drawing slot per layer, top (1) to bottom (0)."""
    return [np.linspace(1, 0, n) if n > 1 else np.array([0.5]) for n in counts]


# ---- drawing ------------------------------------------------------------------------------------
def draw(view: NetView, tasks: list[TaskInfo], order: list[np.ndarray], ax, title: str = "",
         compact: bool = False):
    """Draw one NetView on `ax` with the node order of `neuron_order` (same order → same
    layout). compact: short layer labels for small panels. Returns ax, with `ax.n_edges` the
    number of drawn edges (one per unpruned weight; one per input group and neuron with some
    unpruned weight between them for pixel maps)."""
    groups = input_groups(tasks)
    grouped = len(groups) < view.layers[0]
    weights, states, cross, counts, pos = _drawn_layers(view, order, groups, grouped)
    parts = _edge_parts(view, tasks, groups, grouped, weights, states, cross, pos)
    ax.n_edges = _add_edges(ax, parts)
    _draw_nodes(view, tasks, groups, grouped, counts, pos, ax, compact)
    _style_axes(ax, counts, grouped, title, compact)
    ax.node_positions, ax.input_groups = pos, (groups if grouped else None)  # for mark_cut
    return ax


def _drawn_layers(view: NetView, order, groups, grouped: bool):
    """What is drawn per layer: weight values, states and cross flags (the first layer's
    aggregated per input group for pixel maps), node counts and node positions [n, 2]."""
    weights, states, cross = list(view.weights), list(view.states), list(view.cross)
    counts = list(view.layers)
    slot = [np.empty(n, dtype=int) for n in view.layers]
    for layer, o in enumerate(order):
        slot[layer][o] = np.arange(len(o))
    if grouped:
        weights[0], states[0], cross[0] = _aggregate_inputs(view, groups)
        counts[0] = len(groups)
        slot[0] = np.arange(len(groups))
    ys = _positions(counts)
    if grouped:  # pixel maps need room above and below their node
        ys[0] = (counts[0] - 0.5 - np.arange(counts[0])) / counts[0]
    pos = [np.stack([np.full(n, float(layer)), ys[layer][slot[layer]]], axis=1)
           for layer, n in enumerate(counts)]
    return weights, states, cross, counts, pos


def _edge_parts(view: NetView, tasks, groups, grouped: bool, weights, states, cross, pos):
    """Edges grouped by line style → list of (segments [E, 2, 2], rgb [E, 3], widths [E]):
    alive weights in their task's colour, cross-task ones in CROSS_COLOR, the other states in
    their grey style; width ∝ |w|."""
    biggest = max((np.abs(w[s != graph.PRUNED]).max() for w, s in zip(weights, states)
                   if (s != graph.PRUNED).any()), default=1.0) or 1.0
    task_rgb = np.array([matplotlib.colors.to_rgb(task_color(t)) for t in range(len(tasks))])
    styled = {code: matplotlib.colors.to_rgb(c) for code, (c, _) in STATE_STYLES.items()}
    parts: dict[str, list] = {"-": [], "--": [], ":": []}  # linestyle → (segments, rgb, width)
    for i, (w, st, cr) in enumerate(zip(weights, states, cross)):
        v, u = np.nonzero(st != graph.PRUNED)
        seg = np.stack([pos[i][u], pos[i + 1][v]], axis=1)
        code, c = st[v, u], cr[v, u]
        owner = (np.array([g[0] for g in groups])[u] if i == 0 and grouped
                 else view.fwd[i][u].argmax(axis=1) if len(u) else u)
        rgb = np.where(c[:, None], matplotlib.colors.to_rgb(CROSS_COLOR), task_rgb[owner])
        width = 0.35 + 2.6 * np.abs(w[v, u]) / biggest
        for s_code in STATE_STYLES:
            sel = code == s_code
            rgb[sel] = styled[s_code]
            width[sel] *= 0.6
        for ls in parts:
            sel = LINESTYLE_OF_STATE[code] == ls
            parts[ls].append((seg[sel], rgb[sel], width[sel]))
    return parts


def _add_edges(ax, parts: dict) -> int:
    """One LineCollection per line style (solid below the others), faded when there are many
    edges; `ax.edge_collections` keeps them. Returns the number of edges."""
    joined = {ls: np.concatenate([c[0] for c in chunks]) if chunks else np.zeros((0, 2, 2))
              for ls, chunks in parts.items()}
    n_edges = sum(len(seg) for seg in joined.values())
    alpha = 1.0 if n_edges <= 250 else max(0.2, (250 / max(n_edges, 1)) ** 0.5)
    ax.edge_collections = []
    for ls, chunks in parts.items():
        if not len(joined[ls]):
            continue
        lc = LineCollection(joined[ls], colors=np.concatenate([c[1] for c in chunks]),
                            linewidths=np.concatenate([c[2] for c in chunks]), linestyles=ls,
                            alpha=alpha, zorder=1 if ls == "-" else 2)
        ax.add_collection(lc)
        ax.edge_collections.append(lc)
    return n_edges


def _draw_nodes(view: NetView, tasks, groups, grouped: bool, counts, pos, ax,
                compact: bool) -> None:
    """Inputs and outputs in their task's colour (pixel maps for image tasks); hidden neurons in
    their task's colour when one task alone touches them, CROSS_COLOR when several do, faded
    off the alive subgraph."""
    size = max(6.0, 40.0 - max(counts) / 2.5) * (0.55 if compact else 1.0)
    for layer, p in enumerate(pos):
        if layer == 0 and grouped:
            _pixel_maps(view, tasks, groups, p, ax, compact)
            continue
        if layer == 0 or layer == len(pos) - 1:
            owner = [ti for ti, t in enumerate(tasks)
                     for _ in (t.inputs if layer == 0 else t.outputs)]
            face = [task_color(o) for o in owner]
            ax.scatter(p[:, 0], p[:, 1], s=size * 1.4, c=face, edgecolors="black",
                       linewidths=0.5, zorder=3)
            continue
        alive = view.alive_neurons(layer)
        member = view.membership(layer)
        touched = (view.states[layer - 1] != graph.PRUNED).any(axis=1) | \
            (view.states[layer] != graph.PRUNED).any(axis=0)
        face = np.array([FADED] * len(p), dtype=object)
        for j in np.flatnonzero(alive):
            ts = np.flatnonzero(member[j])
            face[j] = task_color(int(ts[0])) if len(ts) == 1 else CROSS_COLOR
        edge = np.where(alive | touched, "0.15", "0.8")
        ax.scatter(p[:, 0], p[:, 1], s=size, c=list(face), edgecolors=list(edge),
                   linewidths=0.5, zorder=3, alpha=None)


def _style_axes(ax, counts, grouped: bool, title: str, compact: bool) -> None:
    """Layer names as x ticks, no y axis, grid or frame; the panel title."""
    ax.set_xlim(-0.62 if grouped else -0.15, len(counts) - 0.85)
    ax.set_ylim(-0.06, 1.06)
    depth = len(counts) - 2
    if compact:
        labels = ["in", *[f"h{i}" for i in range(1, depth + 1)], "out"]
    else:
        labels = ["inputs", *[f"hidden {i}" for i in range(1, depth + 1)], "outputs"]
    ax.set_xticks(range(len(counts)), labels, fontsize=7 if compact else 9)
    ax.tick_params(axis="x", length=0, pad=2)
    ax.set_yticks([])
    ax.grid(False)
    for spine in ax.spines.values():
        spine.set_visible(False)
    if title:
        ax.set_title(title, fontsize=8 if compact else 11, pad=3)


CUT_STYLE = {"color": "black", "ls": (0, (3, 2))}  # the minimum cut C_w: black, dashed
MAX_MARKED = 400  # a larger cut (dense levels) would cover the drawing: counted, not drawn


def mark_cut(ax, cut: list[np.ndarray], compact: bool = False) -> int:
    """Overlay the minimum cut C_w (docs/science.md §6; pipeline.cut.seed_cut) on a panel drawn by
    `draw`: cut[i] [n_{i+1}, n_i] bool per weight matrix, each cut weight as a black dashed
    line (a pixel map's weights into one neuron as one line). Cuts above MAX_MARKED weights are
    only counted, in a second title line. Returns the number of lines drawn."""
    total = int(sum(c.sum() for c in cut))
    if total > MAX_MARKED:
        title = ax.get_title()
        ax.set_title(f"{title}\nminimum cut C_w: {total} weights (too many to mark)"
                     if title else f"minimum cut C_w: {total} weights (too many to mark)",
                     fontsize=8 if compact else 11, pad=3)
        return 0
    pos, groups, segs = ax.node_positions, ax.input_groups, []
    for i, c in enumerate(cut):
        v, u = np.nonzero(c)
        if i == 0 and groups is not None:  # inputs drawn as one node per pixel map
            group_of = np.empty(c.shape[1], dtype=int)
            for g, (_, cols) in enumerate(groups):
                group_of[cols] = g
            pairs = np.unique(np.stack([group_of[u], v], axis=1), axis=0).reshape(-1, 2)
            u, v = pairs[:, 0], pairs[:, 1]
        segs += list(np.stack([pos[i][u], pos[i + 1][v]], axis=1))
    if segs:
        ax.add_collection(LineCollection(segs, colors=CUT_STYLE["color"],
                                         linestyles=[CUT_STYLE["ls"]], linewidths=1.4, zorder=4))
    return len(segs)


def cut_handle() -> Line2D:
    """Legend entry of mark_cut's lines."""
    return Line2D([], [], lw=1.6, label="minimum cut C_w (zeroed by the functional split)",
                  **CUT_STYLE)


def _pixel_maps(view: NetView, tasks, groups, p, ax, compact: bool) -> None:
    """Each image task's pixels as a small map: task colour where the pixel reaches an output of
    its own task only, alarm colour where it reaches another task's output, light grey where it
    reaches no output (pruned away); other tasks' features as nodes."""
    height = min(0.8 / len(groups), 0.34)
    size = 30 * (0.55 if compact else 1.0)
    for g, (ti, cols) in enumerate(groups):
        x, y = p[g]
        if len(cols) == 1:
            ax.scatter([x], [y], s=size, c=[task_color(ti)], edgecolors="black",
                       linewidths=0.5, zorder=3)
            continue
        reach = view.bwd[0][cols]                    # [n_pix, T]
        own = reach[:, ti]
        other = np.delete(reach, ti, axis=1).any(axis=1)
        rgb = np.ones((len(cols), 3)) * 0.93
        rgb[own] = matplotlib.colors.to_rgb(task_color(ti))
        rgb[other] = matplotlib.colors.to_rgb(CROSS_COLOR)
        h, w = image_shape(tasks[ti])
        inset = ax.inset_axes([x - 0.58, y - height / 2, 0.5, height], transform=ax.transData)
        inset.imshow(rgb.reshape(h, w, 3), interpolation="nearest", aspect="equal")
        inset.set_xticks([])
        inset.set_yticks([])
        inset.set_xlabel(f"coverage {own.mean():.0%}", fontsize=6 if compact else 8, labelpad=1)
        ax.scatter([x], [y], s=size * 0.6, c=[task_color(ti)], edgecolors="black",
                   linewidths=0.5, zorder=3)


def legend_handles(tasks: list[TaskInfo]) -> list[Line2D]:
    """Legend entries: one colour per task, the alarm colour, the non-alive weight styles and
    the faded neuron."""
    h = [Line2D([], [], color=task_color(i), lw=2.5, label=f"alive, task {t.name}")
         for i, t in enumerate(tasks)]
    h.append(Line2D([], [], color=CROSS_COLOR, lw=2.5, label="alive, cross-task (s → t ≠ s)"))
    names = {graph.AUDIENCE: "audience", graph.ZOMBIE: "zombie",
             graph.UNPRODUCTIVE: "unproductive"}
    h += [Line2D([], [], color=c, ls=ls, lw=1.8, label=names[code])
          for code, (c, ls) in STATE_STYLES.items()]
    h.append(Line2D([], [], ls="none", marker="o", markerfacecolor=FADED,
                    markeredgecolor="0.8", markersize=7, label="neuron off the alive subgraph"))
    return h


def grid_columns(n: int, most: int) -> int:
    """Columns for n panels, at most `most` + 2 and at least `most` − 1 (or n when fewer), chosen
    so that the last row is as full as possible: never one panel alone on a row when a nearby
    width avoids it (21 levels: 7 columns, 3 full rows, not 5 columns and a lone panel)."""
    if n <= most:
        return max(n, 1)
    options = range(max(most - 1, 2), most + 3)
    return min(options, key=lambda c: ((-n) % c, abs(c - most)))


def figure_levels(views: dict[int, NetView], tasks, order, panels: list[tuple[int, str]],
                  suptitle: str, cols: int | None = None, compact: bool = False,
                  cuts: dict[int, list[np.ndarray]] | None = None):
    """A figure with one panel per (level, title), all drawn with the same node order; with
    `cuts` (level → mark_cut's matrices) the minimum cut marked on each panel."""
    n = len(panels)
    cols = grid_columns(n, cols) if cols else n
    rows = -(-n // cols)
    width, height = (3.3, 2.9) if compact else (5.6, 5.0)
    fig = plt.figure(figsize=(width * cols, height * rows + 0.9), layout="constrained")
    axes = np.atleast_1d(fig.subplots(rows, cols)).reshape(-1)
    for ax, (level, title) in zip(axes, panels):
        draw(views[level], tasks, order, ax, title, compact=compact)
        if cuts is not None and level in cuts:
            mark_cut(ax, cuts[level], compact)
    for ax in axes[n:]:
        ax.axis("off")
    fig.suptitle(suptitle, fontsize=12 if compact else 13)
    handles = legend_handles(tasks) + ([cut_handle()] if cuts is not None else [])
    fig.legend(handles=handles, loc="outside lower center",
               ncol=min(len(tasks) + 5, 4 if compact and cols < 4 else 8),
               fontsize=9, frameon=False)
    return fig


def animate(views: dict[int, NetView], tasks, order, titles: dict[int, str], suptitle: str,
            path: str | Path, dpi: int, fps: float = 2.0,
            cuts: dict[int, list[np.ndarray]] | None = None) -> int:
    """A GIF with one frame per level (same layout), written with matplotlib's Pillow writer;
    `cuts` as in figure_levels. Returns the number of frames."""
    levels = sorted(views)
    fig = plt.figure(figsize=(7.5, 6.2), layout="constrained")
    ax = fig.add_subplot()
    fig.suptitle(suptitle, fontsize=12)
    fig.legend(handles=legend_handles(tasks) + ([cut_handle()] if cuts is not None else []),
               loc="outside lower center", ncol=3, fontsize=8, frameon=False)

    def frame(i: int):
        for inset in list(ax.child_axes):
            inset.remove()
        ax.clear()
        draw(views[levels[i]], tasks, order, ax, titles[levels[i]])
        if cuts is not None and levels[i] in cuts:
            mark_cut(ax, cuts[levels[i]])
        return []

    frame(0)
    fig.draw_without_rendering()  # constrained layout of the first frame ...
    fig.set_layout_engine("none")  # ... kept for every frame: nothing jumps between frames
    anim = FuncAnimation(fig, frame, frames=len(levels), blit=False, repeat=True)
    try:  # atomically: PIL picks the format from the name, so the temporary one ends in .gif
        io.write_with(path, lambda tmp: anim.save(str(tmp), writer=PillowWriter(fps=fps), dpi=dpi),
                      keep_suffix=True)
    finally:
        plt.close(fig)
    return len(levels)
