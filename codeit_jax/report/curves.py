"""Performance curves of a CodeIt run as PNG bytes (matplotlib, no display needed).

Two figures: the fraction of evaluation tasks solved per meta-iteration and cumulatively; and,
when a mutation-baseline curve is available, the paper's comparison ("CodeIt vs mutation
baseline" in the official results.ipynb): fraction solved against the number of sampled programs
on a linear axis, CodeIt being the policy's cumulative solutions merged with the mutation
baseline's (``paper_cumulative_performance`` at ``num_sampled_programs``), drawn beside the
policy alone. The axis ends where the CodeIt run ends (a baseline usually runs much longer), so
a short run is not squeezed against the origin; the caption says where the baseline goes on.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")  # before pyplot: render to memory, never open a window

import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import FuncFormatter  # noqa: E402

_FIGSIZE = (7.0, 3.8)
_DPI = 110
#: Curves with more points than this are drawn as lines without markers.
_MAX_MARKED = 30


def _png(figure: plt.Figure) -> bytes:
    buffer = io.BytesIO()
    # No "Software" text chunk: the report carries no URL, not even inside an image.
    figure.savefig(buffer, format="png", dpi=_DPI, bbox_inches="tight", metadata={"Software": None})
    plt.close(figure)
    return buffer.getvalue()


def performance_png(rows: Sequence[Mapping[str, float]]) -> bytes:
    """Per-iteration and cumulative fraction solved against the meta-iteration."""
    if not rows:
        raise ValueError("no performance rows to plot")
    x = [int(r["meta_iteration"]) for r in rows]
    figure, axes = plt.subplots(figsize=_FIGSIZE)
    axes.plot(x, [r["cumulative_performance"] for r in rows], "o-", label="cumulative")
    axes.plot(x, [r["performance"] for r in rows], "s--", label="this meta-iteration")
    if has_paper_columns(rows):
        paper = [r["paper_cumulative_performance"] for r in rows]
        axes.plot(x, paper, "^-", label="cumulative, with the mutation solutions (paper)")
    axes.set_xlabel("meta-iteration")
    axes.set_ylabel("fraction of evaluation tasks solved")
    axes.set_ylim(bottom=0.0)
    if len(x) < 12:
        axes.set_xticks(x)
    axes.grid(alpha=0.3)
    axes.legend()
    axes.set_title("CodeIt: evaluation tasks solved (top-3 submissions)")
    return _png(figure)


#: Sample rates drawn by `learning_png`, with their legend labels.
_RATE_LABELS = (
    ("parse_rate", "parse"),
    ("run_rate", "run without error"),
    ("grid_rate", "return grids"),
    ("solve_rate", "solve a demonstration"),
    ("new_rate", "new programs"),
)


def has_learning_columns(rows: Sequence[Mapping[str, float | None]]) -> bool:
    """Rows with the training loss or the sample rates (runs written since they exist)."""
    return any(r.get(name) is not None for r in rows for name in ("train_loss", "parse_rate"))


def learning_png(rows: Sequence[Mapping[str, float | None]]) -> bytes:
    """The last epoch's training loss and the fractions of samples that parse, run, return
    grids, solve a demonstration or are new, per meta-iteration (unknown values left out)."""
    if not has_learning_columns(rows):
        raise ValueError("no training loss or sample rates to plot")
    figure, (loss_axes, rate_axes) = plt.subplots(1, 2, figsize=(_FIGSIZE[0] * 1.6, _FIGSIZE[1]))
    known = [(int(r["meta_iteration"]), r["train_loss"]) for r in rows if r.get("train_loss")]
    if known:
        loss_axes.plot(*zip(*known), "o-", color="tab:red")
    loss_axes.set_xlabel("meta-iteration")
    loss_axes.set_ylabel("training loss (last epoch)")
    loss_axes.set_ylim(bottom=0.0)
    loss_axes.grid(alpha=0.3)
    loss_axes.set_title("Training loss")
    for name, label in _RATE_LABELS:
        points = [(int(r["meta_iteration"]), r[name]) for r in rows if r.get(name) is not None]
        if points:
            rate_axes.plot(*zip(*points), "o-", label=label)
    rate_axes.set_xlabel("meta-iteration")
    rate_axes.set_ylabel("fraction of policy samples")
    rate_axes.set_ylim(0.0, 1.0)
    rate_axes.grid(alpha=0.3)
    rate_axes.legend(fontsize=8)
    rate_axes.set_title("Policy samples")
    return _png(figure)


def _thousands(x: float, _: int) -> str:
    """Tick labels as the paper's: 100k, 200k, ... (plain numbers below a thousand)."""
    return f"{x / 1000:g}k" if abs(x) >= 1000 else f"{x:g}"


def has_paper_columns(rows: Sequence[Mapping[str, float]]) -> bool:
    """The rows carry the paper's x and figure (runs written before them do not)."""
    return bool(rows) and all("num_sampled_programs" in r for r in rows)


def codeit_points(
    rows: Sequence[Mapping[str, float]], samples_per_iteration: int | None
) -> tuple[list[int], list[float] | None, list[float]] | None:
    """(x, paper figure, policy figure) of CodeIt on the sampled-programs axis: the rows' own
    ``num_sampled_programs``; for an older run ``(i + 1) * samples_per_iteration`` without the
    paper figure; None when neither is known."""
    if has_paper_columns(rows):
        return (
            [int(r["num_sampled_programs"]) for r in rows],
            [r["paper_cumulative_performance"] for r in rows],
            [r["cumulative_performance"] for r in rows],
        )
    if samples_per_iteration and rows:
        x = [(int(r["meta_iteration"]) + 1) * samples_per_iteration for r in rows]
        return x, None, [r["cumulative_performance"] for r in rows]
    return None


def axis_end(codeit_x: Sequence[int], mutation: Sequence[tuple[int, float]]) -> int:
    """Right end of the x axis: the CodeIt run's last point (at least the baseline's first),
    or the whole baseline when CodeIt cannot be placed."""
    if not codeit_x:
        return max(s for s, _ in mutation)
    return max(max(codeit_x), min(s for s, _ in mutation))


def comparison_png(
    rows: Sequence[Mapping[str, float]],
    samples_per_iteration: int | None,
    mutation: Sequence[tuple[int, float]],
) -> bytes:
    """CodeIt (paper figure and policy alone) and the mutation baseline against programs
    sampled, linear axis as in the paper. Without paper columns or a sample log CodeIt cannot
    be placed and only the baseline is drawn."""
    if not mutation:
        raise ValueError("no mutation baseline points to plot")
    figure, axes = plt.subplots(figsize=_FIGSIZE)
    points = codeit_points(rows, samples_per_iteration)
    codeit_x: list[int] = []
    if points is not None:
        codeit_x, paper, own = points
        marked = len(codeit_x) <= _MAX_MARKED  # a hundred markers hide the line
        if paper is not None:
            axes.plot(codeit_x, paper, "o-" if marked else "-", color="tab:blue", label="CodeIt")
        axes.plot(
            codeit_x, own, "s--" if marked else "--", color="tab:orange", markersize=4,
            label="CodeIt, policy only (cumulative)",
        )  # fmt: skip
    few = len(mutation) <= _MAX_MARKED  # a short baseline run has a point or a few
    axes.plot(
        [s for s, _ in mutation], [f for _, f in mutation], "^-" if few else "-", color="black",
        markersize=5, label="mutation baseline",
    )  # fmt: skip
    axes.set_xlim(0, axis_end(codeit_x, mutation) * 1.03)
    axes.xaxis.set_major_formatter(FuncFormatter(_thousands))
    axes.set_xlabel("number of sampled programs")
    axes.set_ylabel("fraction of tasks solved")
    axes.set_ylim(bottom=0.0)
    axes.grid(alpha=0.3)
    axes.legend()
    axes.set_title("CodeIt against the mutation baseline")
    return _png(figure)
