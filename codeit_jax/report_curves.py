"""Performance curves of a CodeIt run as PNG bytes (matplotlib, no display needed).

Two figures: the fraction of evaluation tasks solved per meta-iteration and cumulatively; and,
when a mutation-baseline curve is available, CodeIt's cumulative fraction against the baseline's
on a common axis, the number of programs sampled, which is how the paper compares them (log
scale: the baseline usually runs far longer than the CodeIt run beside it).
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")  # before pyplot: render to memory, never open a window

import matplotlib.pyplot as plt  # noqa: E402

_FIGSIZE = (7.0, 3.8)
_DPI = 110


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
    axes.set_xlabel("meta-iteration")
    axes.set_ylabel("fraction of evaluation tasks solved")
    axes.set_ylim(bottom=0.0)
    if len(x) < 12:
        axes.set_xticks(x)
    axes.grid(alpha=0.3)
    axes.legend()
    axes.set_title("CodeIt: evaluation tasks solved (top-3 submissions)")
    return _png(figure)


def comparison_png(
    rows: Sequence[Mapping[str, float]],
    samples_per_iteration: int | None,
    mutation: Sequence[tuple[int, float]],
) -> bytes:
    """CodeIt's cumulative fraction and the mutation baseline's against programs sampled.

    Without ``samples_per_iteration`` (no sample log in the workdir) only the baseline is drawn:
    CodeIt's meta-iterations cannot be placed on the baseline's axis.
    """
    if not mutation:
        raise ValueError("no mutation baseline points to plot")
    figure, axes = plt.subplots(figsize=_FIGSIZE)
    axes.plot(
        [s for s, _ in mutation], [f for _, f in mutation], "-", color="tab:gray",
        label="mutation baseline",
    )  # fmt: skip
    if samples_per_iteration and rows:
        axes.plot(
            [(int(r["meta_iteration"]) + 1) * samples_per_iteration for r in rows],
            [r["cumulative_performance"] for r in rows],
            "o-",
            color="tab:blue",
            label="CodeIt (cumulative)",
        )
    # A baseline usually runs far longer than a CodeIt run: a log axis shows both.
    axes.set_xscale("log")
    axes.set_xlabel("programs sampled (log scale)")
    axes.set_ylabel("fraction of evaluation tasks solved")
    axes.set_ylim(bottom=0.0)
    axes.grid(alpha=0.3, which="both")
    axes.legend()
    axes.set_title("CodeIt against the mutation baseline")
    return _png(figure)
