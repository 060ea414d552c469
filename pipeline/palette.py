"""The one palette of every figure: a colour means one thing in all of them.

Tasks take the Okabe–Ito colours (Okabe & Ito 2008, safe for the common colour-vision
deficiencies) in a fixed order, so task t has the same colour in accuracy.png, the network
drawings, the coverage maps and every other figure. There are six: a seventh task reuses the
first colour, so from the seventh on a task is its (colour, marker) pair (`task_style`), and the
figures that can show a task by colour alone (network drawings, coverage maps) are not drawn for
more than six tasks (`colour_only_refusal`) — a colour never names two tasks. Vermillion is reserved for cross-task
structure (alive weights on a path between two tasks, E_× of docs/science.md §6; pixels reaching
another task's output; neurons shared by tasks) and is never a task's colour. Everything that
is not a task — parameter states, split criteria, layers, study series — is drawn in greys
and black, told apart by line style, marker or hatch, so that no colour of a figure that
shows no task can be read as one.
"""
from __future__ import annotations

# Okabe–Ito without vermillion (cross-task) and black (reference lines): blue, bluish green,
# reddish purple, sky blue, orange, yellow. Orange comes late: it is the nearest to vermillion.
TASK_COLORS = ("#0072B2", "#009E73", "#CC79A7", "#56B4E9", "#E69F00", "#F0E442")
CROSS_TASK = "#D55E00"   # Okabe–Ito vermillion: cross-task, never a task
REFERENCE = "#000000"    # reference lines and marks (first split per seed, 0 = split)

# non-task series: greys from dark to light, with a line style, marker and hatch each
NEUTRALS = ("0.1", "0.45", "0.68", "0.82")
LINESTYLES = ("-", "--", ":", "-.")
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
HATCHES = ("", "//", "..", "xx")

# parameter states (docs/science.md §5) in figures and drawings: alive weights of a drawing take their
# task's colour; in state counts (no task) alive is the darkest grey
STATE_COLORS = {"alive": "0.25", "audience": "0.5", "zombie": "0.05", "unproductive": "0.78",
                "pruned": "0.92"}
STATE_HATCHES = {"alive": "", "audience": "//", "zombie": "..", "unproductive": "", "pruned": ""}


# tasks 0–5 draw circles, 6–11 squares, …: (colour, marker) is unique for up to 48 tasks
TASK_MARKERS = MARKERS
MAX_STYLED_TASKS = len(TASK_COLORS) * len(TASK_MARKERS)


def task_color(t: int) -> str:
    """Colour of task number t (0-based, in data.tasks order). It cycles after 6 tasks, so past
    six it names a task only together with its marker (task_style)."""
    return TASK_COLORS[t % len(TASK_COLORS)]


def task_style(t: int) -> tuple[str, str]:
    """(colour, marker) of task number t: one pair per task for up to MAX_STYLED_TASKS tasks
    (ValueError beyond: a pair would name two tasks)."""
    if not 0 <= t < MAX_STYLED_TASKS:
        raise ValueError(f"task {t}: only {MAX_STYLED_TASKS} tasks have a (colour, marker) pair")
    return task_color(t), TASK_MARKERS[t // len(TASK_COLORS)]


def colour_only_refusal(figure: str, n_tasks: int) -> str | None:
    """The one line that says why `figure`, which tells tasks apart by colour alone, is not drawn
    for n_tasks tasks; None when every task has a colour of its own."""
    if n_tasks <= len(TASK_COLORS):
        return None
    return (f"{figure} not drawn: {n_tasks} tasks but {len(TASK_COLORS)} task colours, and it "
            "tells tasks apart by colour alone (a colour would name two tasks)")


def task_colors(n: int) -> list[str]:
    """The colours of tasks 0 … n−1."""
    return [task_color(t) for t in range(n)]


def neutral(i: int) -> tuple[str, str, str]:
    """(colour, line style, marker) of the i-th non-task series of a figure."""
    return NEUTRALS[i % len(NEUTRALS)], LINESTYLES[i % len(LINESTYLES)], MARKERS[i % len(MARKERS)]


def task_colormap(t: int):
    """Sequential colormap from white to task t's colour (coverage maps: a fraction of seeds
    per pixel, in the task's own colour)."""
    from matplotlib.colors import LinearSegmentedColormap

    return LinearSegmentedColormap.from_list(f"task{t}", ["#FFFFFF", task_color(t)])
