"""One self-contained HTML report of a CodeIt run.

    python -m codeit_jax.report.page --workdir=runs/tiny [--out=report.html]
        [--tasks=arc1|arc2|DIR|FILE] [--mutation_csv=mutation_performance.csv]

The report names the run's inference set (as its solutions files record it) and shows the
performance curves, the paper's comparison with the mutation baseline
(its ``mutation_performance.csv``: given, else the workdir's, else the CodeIt data's), the table
of ``performance.csv``, and every task the policy solved: its demonstration and test grids in
ARC colours next to the program that solved it. The headline number is the paper's CodeIt
figure, ``paper_cumulative_performance`` (the policy's solutions merged with the mutation
baseline's; `codeit_jax.replay.paper_metric`), at ``num_sampled_programs``. Everything is inline
(PNG
data URIs, one style block), so the file opens offline and can be mailed or archived on its own.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from pathlib import Path

from codeit_jax.execution.batch import Outcome, run_in_process
from codeit_jax.replay.sample_stats import SAMPLE_COLUMNS
from codeit_jax.report.curves import (
    axis_end,
    codeit_points,
    comparison_png,
    has_learning_columns,
    has_paper_columns,
    learning_png,
    performance_png,
)
from codeit_jax.report.grids import ARC_COLOURS, grid_img_tag, png_data_uri
from codeit_jax.report.inputs import (
    RunRecord,
    SolvedTask,
    TaskSource,
    default_task_source,
    find_mutation_csv,
    mismatched_tasks,
    read_mutation_csv,
    read_run,
    tasks_for,
)
from codeit_jax.tasks import Example, Grid, Task, is_grid

#: CPU seconds a solved program gets per input when the report runs it to show its outputs.
PRODUCE_TIMEOUT_S = 1.0

#: Default report file name inside the workdir.
REPORT_FILE = "report.html"

#: A drawn grid's longer side aims at about this many pixels, within the cell size limits.
_GRID_TARGET_PX = 150
_CELL_PX_RANGE = (4, 16)

_STYLE = """
body { font-family: system-ui, -apple-system, 'Segoe UI', sans-serif; margin: 24px auto;
       max-width: 1200px; color: #1b1b1b; background: #fafafa; padding: 0 16px; }
h1 { margin-bottom: 4px; } .meta { color: #555; margin-top: 0; }
.warning { background: #fff3cd; border: 1px solid #e0c36a; padding: 8px 12px; }
.curves img { max-width: 100%; margin: 8px 0; border: 1px solid #ddd; background: #fff; }
table.perf { border-collapse: collapse; font-size: 13px; }
table.perf th, table.perf td { border: 1px solid #ccc; padding: 3px 8px; text-align: right; }
table.perf th { background: #eee; }
.index a { display: inline-block; margin: 2px 6px 2px 0; font-family: monospace; }
.task { background: #fff; border: 1px solid #ddd; border-radius: 6px; margin: 16px 0;
        padding: 12px 16px; }
.task h3 { margin: 0 0 4px 0; font-family: monospace; font-size: 18px; }
.task .body { display: flex; flex-wrap: wrap; gap: 20px; align-items: flex-start; }
.program { flex: 0 1 300px; min-width: 240px; }
.program pre { background: #f4f4f4; border: 1px solid #e2e2e2; padding: 8px; font-size: 12px;
               overflow-x: auto; white-space: pre; margin: 0; }
.examples { flex: 1 1 480px; display: flex; flex-wrap: wrap; gap: 14px; }
.pair { display: flex; align-items: center; gap: 6px; padding: 6px;
        border: 1px solid #eee; border-radius: 4px; }
.pair.test { border-color: #7a9ee0; background: #f3f7ff; }
.pair .label { font-size: 11px; color: #666; writing-mode: vertical-rl; transform: rotate(180deg); }
.arrow { color: #888; font-size: 18px; }
.produced { display: flex; flex-direction: column; align-items: center; font-size: 11px;
            color: #2a7a2a; }
.produced.wrong { color: #b03030; }
img.grid { image-rendering: pixelated; display: block; }
.palette span { display: inline-block; padding: 1px 7px; margin-right: 3px; color: #fff;
                font-size: 12px; border: 1px solid #888; }
details { margin-top: 8px; font-size: 13px; }
"""


def _e(text: object) -> str:
    return html.escape(str(text))


def _cell_px(grid: Grid) -> int:
    """Small grids drawn with large cells and large grids with small ones, so both are legible."""
    low, high = _CELL_PX_RANGE
    return max(low, min(high, _GRID_TARGET_PX // max(len(grid), len(grid[0]))))


def _pair_html(example: Example, label: str, test: bool, produced: Outcome | None = None) -> str:
    """Input -> expected output, then what the program produced on that input (when it was
    run): the same grid marked "= expected", another grid, or why there is none."""
    x, y = example
    shown = ""
    if produced is not None:
        if produced.ok and is_grid(produced.value):
            same = produced.value == y
            mark = "= expected" if same else "differs"
            shown = (
                f'<span class="arrow">|</span><span class="produced{"" if same else " wrong"}">'
                f"{grid_img_tag(produced.value, f'{label} produced', _cell_px(produced.value))}"
                f"<span>{mark}</span></span>"
            )
        else:
            why = produced.error or "not a grid"
            shown = f'<span class="arrow">|</span><span class="produced wrong">{_e(why)}</span>'
    return (
        f'<div class="pair{" test" if test else ""}"><span class="label">{_e(label)}</span>'
        f'{grid_img_tag(x, f"{label} input", _cell_px(x))}<span class="arrow">&rarr;</span>'
        f"{grid_img_tag(y, f'{label} output', _cell_px(y))}{shown}</div>"
    )


def produced_outputs(program: str, task: Task) -> list[Outcome] | None:
    """The program's outcome on every demonstration then test input, in this process (a
    solved program already ran within the sandbox's limits; the time budget applies here too);
    None when it cannot be run at all."""
    inputs = [x for x, _ in task.train] + [x for x, _ in task.test]
    try:
        return run_in_process([(program, inputs)], timeout_s=PRODUCE_TIMEOUT_S)[0]
    except Exception:  # noqa: BLE001 - the report then shows expected grids only
        return None


def _score(performance: Sequence[float]) -> str:
    return f"{sum(p == 1.0 for p in performance)}/{len(performance)}"


def task_html(solved: SolvedTask, task: Task) -> str:
    """A solved task: the program that solved it beside its demonstration and test pairs
    (input, expected output, what the program produced)."""
    record = solved.solution
    produced = produced_outputs(record.program, task) or [None] * (len(task.train) + len(task.test))
    demos, tests = produced[: len(task.train)], produced[len(task.train) :]
    pairs = [
        _pair_html(ex, f"demo {k + 1}", False, out)
        for k, (ex, out) in enumerate(zip(task.train, demos))
    ]
    pairs += [
        _pair_html(ex, f"test {k + 1}", True, out)
        for k, (ex, out) in enumerate(zip(task.test, tests))
    ]
    others = ""
    if solved.other_submissions:
        listed = "".join(f"<pre>{_e(p)}</pre>" for p in solved.other_submissions)
        others = (
            f"<details><summary>{len(solved.other_submissions)} other submitted program(s)"
            f"</summary>{listed}</details>"
        )
    return (
        f'<section class="task" id="task-{_e(solved.key)}"><h3>{_e(solved.key)}</h3>'
        f'<p class="meta">found in meta-iteration {record.meta_iteration}; demonstrations '
        f"solved {_score(record.demonstration_performance)}, test examples "
        f"{_score(record.test_performance)}</p>"
        f'<div class="body"><div class="program"><pre>{_e(record.program)}</pre>{others}</div>'
        f'<div class="examples">{"".join(pairs)}</div></div></section>'
    )


def _solved_cell(fraction: float | None, num_tasks: int) -> str:
    """A fraction of the tasks as 'count (fraction)'; a dash where the row lacks it."""
    if fraction is None:
        return "<td>&ndash;</td>"
    return f"<td>{round(fraction * num_tasks)} ({fraction:.3f})</td>"


#: Below the table when a row cannot tell seed from mutated tasks (`_buffer_cells`).
_SEEDS_UNKNOWN_NOTE = (
    "* seed and mutated tasks together: written before they were counted apart, or by a run "
    "resumed from such a checkpoint."
)


def performance_table(run: RunRecord) -> str:
    """performance.csv as a table, fractions also as task counts (rows of runs written before
    the paper columns show dashes there)."""
    head = (
        "<tr><th>meta-iteration</th><th>sampled programs</th><th>CodeIt, paper (cumulative, "
        "with mutation solutions)</th><th>policy solved (cumulative)</th><th>policy solved "
        "(this iteration)</th><th>step</th><th>policy tasks</th><th>seed tasks</th>"
        "<th>mutated tasks</th><th>train s</th><th>sample s</th><th>execute s</th><th>loss</th>"
        "<th>samples: parse / run / grids / solve / new</th></tr>"
    )
    body = []
    for r in run.rows:
        sampled = r.get("num_sampled_programs")
        body.append(
            f"<tr><td>{r['meta_iteration']}</td>"
            f"<td>{'&ndash;' if sampled is None else f'{sampled:,}'}</td>"
            f"{_solved_cell(r.get('paper_cumulative_performance'), run.num_tasks)}"
            f"{_solved_cell(r['cumulative_performance'], run.num_tasks)}"
            f"{_solved_cell(r['performance'], run.num_tasks)}<td>{r['step']}</td>"
            f"{_buffer_cells(r)}"
            f"<td>{r['train_seconds']:.1f}</td><td>{r['sample_seconds']:.1f}</td>"
            f"<td>{r['execute_seconds']:.1f}</td>{_learning_cells(r)}</tr>"
        )
    table = f'<table class="perf">{head}{"".join(body)}</table>'
    if any(r.get("num_seed_tasks") is None for r in run.rows):
        table += f'<p class="meta">{_e(_SEEDS_UNKNOWN_NOTE)}</p>'
    return table


def _buffer_cells(row: dict) -> str:
    """Policy, seed and mutated tasks in the buffer; without a seed count (older rows) the
    mutated count includes the seeds, so it is starred and the seed cell is a dash."""
    seeds = row.get("num_seed_tasks")
    mutated = f"{row['num_mutated_tasks']}" + ("*" if seeds is None else "")
    return (
        f"<td>{row['num_policy_tasks']}</td><td>{'&ndash;' if seeds is None else seeds}</td>"
        f"<td>{mutated}</td>"
    )


def _learning_cells(row: dict) -> str:
    """The loss and the sample rates of a row, dashes where unknown (older runs)."""
    loss = row.get("train_loss")
    rates = [row.get(name) for name in SAMPLE_COLUMNS[1:]]
    rates_text = "&ndash;" if None in rates else " / ".join(f"{100 * rate:.0f}%" for rate in rates)
    return f"<td>{'&ndash;' if loss is None else f'{loss:.3f}'}</td><td>{rates_text}</td>"


def _palette_html() -> str:
    return "".join(
        f'<span style="background:{colour}">{k}</span>' for k, colour in enumerate(ARC_COLOURS)
    )


def comparison_caption(
    run: RunRecord, mutation: Sequence[tuple[int, float]], mutation_source: str | None
) -> str:
    """How the comparison figure was made: where CodeIt sits on the axis, which curve is the
    paper's, and how far the baseline goes beyond the drawn range."""
    points = codeit_points(run.rows, run.samples_per_iteration)
    if points is None:
        placed = "no sample log in the workdir, so CodeIt is not placed on this axis"
    elif has_paper_columns(run.rows):
        placed = (
            "CodeIt is the paper's figure: the policy's cumulative solutions merged with the "
            "mutation baseline's, at performance.csv's num_sampled_programs (the mutation "
            "samples count first); the dashed curve is the policy alone"
        )
    else:
        placed = (
            f"this run predates the paper columns: the policy alone, at "
            f"{run.samples_per_iteration} programs sampled per meta-iteration"
        )
    end = axis_end(points[0] if points else [], mutation)
    beyond = [(s, f) for s, f in mutation if s > end * 1.03]
    more = (
        f" The baseline goes on to {beyond[-1][0]:,} samples ({beyond[-1][1]:.3f}), beyond the "
        "drawn range."
        if beyond
        else ""
    )
    return (
        f"Mutation baseline: {mutation_source} (its fractions are of the tasks it was scored "
        f"on; CodeIt's of its {run.num_tasks}); {placed}.{more}"
    )


def headline(run: RunRecord) -> str:
    """The paper's number for the last meta-iteration, when the run has it."""
    last = run.rows[-1]
    if not has_paper_columns(run.rows):
        return ""
    fraction = last["paper_cumulative_performance"]
    return (
        f"<p class=\"meta\">The paper's CodeIt figure (the policy's solutions merged with the "
        f"mutation baseline's): <b>{round(fraction * run.num_tasks)} of {run.num_tasks} "
        f"({fraction:.3f})</b> at {int(last['num_sampled_programs']):,} sampled programs.</p>"
    )


def inference_set_name(run: RunRecord) -> str:
    """The run's inference set as the run named it, e.g. "ARC-AGI-2 evaluation (120 tasks)";
    runs written before solutions files named it say only how many tasks there were."""
    if run.inference_set:
        return run.inference_set
    return f"{run.num_tasks} inference tasks (this run did not record which set)"


def render_report(
    run: RunRecord,
    tasks: dict[str, Task],
    task_source: str,
    mutation: Sequence[tuple[int, float]] | None = None,
    mutation_source: str | None = None,
) -> str:
    """The whole report as one HTML document."""
    last = run.rows[-1]
    warnings = []
    mismatched = mismatched_tasks(run.solved, tasks)
    if mismatched:
        warnings.append(
            f"{len(mismatched)} task(s) ({', '.join(mismatched[:5])}) have a different number of "
            f"examples in {task_source} than in the run's records: their grids may come from "
            "another version of the task than the run used (pass --tasks)."
        )
    curves = [
        f'<img alt="fraction solved per meta-iteration" '
        f'src="{png_data_uri(performance_png(run.rows))}">'
    ]
    if has_learning_columns(run.rows):
        curves.append(
            f'<img alt="training loss and sample rates per meta-iteration" '
            f'src="{png_data_uri(learning_png(run.rows))}">'
        )
    if mutation:
        curves.append(
            f'<img alt="CodeIt against the mutation baseline" '
            f'src="{png_data_uri(comparison_png(run.rows, run.samples_per_iteration, mutation))}">'
        )
        caption = comparison_caption(run, mutation, mutation_source)
        curves.append(f'<p class="meta">{_e(caption)}</p>')
    index = "".join(f'<a href="#task-{_e(s.key)}">{_e(s.key)}</a>' for s in run.solved)
    sections = "".join(task_html(s, tasks[s.key]) for s in run.solved)
    solved_count = len(run.solved)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>CodeIt report: {_e(run.workdir.name)}, {_e(inference_set_name(run))}</title>
<style>{_STYLE}</style></head>
<body>
<h1>CodeIt run report</h1>
<p class="meta">Inference tasks: <b>{_e(inference_set_name(run))}</b></p>
<p class="meta">{_e(run.workdir)} &middot; {len(run.rows)} meta-iteration(s) &middot;
<b>{solved_count} of {run.num_tasks}</b> tasks solved after meta-iteration
{last["meta_iteration"]} (cumulative {last["cumulative_performance"]:.3f}) &middot;
solutions from {_e(run.solutions_file.name)} &middot; grids from {_e(task_source)}</p>
{headline(run)}
{"".join(f'<p class="warning">{_e(w)}</p>' for w in warnings)}
<h2>Performance</h2>
<div class="curves">{"".join(curves)}</div>
{performance_table(run)}
<h2>Solved tasks ({solved_count} of {run.num_tasks})</h2>
<p class="meta">Each task the policy solved: the submitted program that solves every test
example, and the task's demonstration pairs and (outlined in blue) test pairs: input &rarr;
expected output | the program's output. (Tasks that only the mutation baseline's programs solve
count in the paper's figure but are not listed: the workdir holds the policy's solutions only.)
ARC colours: <span class="palette">{_palette_html()}</span></p>
<p class="index">{index or "No task solved yet."}</p>
{sections}
</body></html>
"""


def write_report(
    workdir: str | Path,
    out: str | Path | None = None,
    tasks: str | Sequence[Task] | None = None,
    mutation_csv: str | None = None,
    official_curve: bool = True,
) -> Path:
    """Read the workdir, render the report and write it (default: ``<workdir>/report.html``).

    ``tasks``: a task source (see `TaskSource`) or the run's own inference tasks (a job that
    writes its report passes those). ``official_curve``: whether the CodeIt data's official
    baseline curve may stand in when neither ``mutation_csv`` nor the workdir has one (not for
    a run on another task set than the official evaluation tasks).
    """
    run = read_run(workdir)
    keys = [s.key for s in run.solved]
    if tasks is None or isinstance(tasks, str):
        source = TaskSource(tasks) if tasks else default_task_source(run.inference_source)
        task_map, task_source = tasks_for(source, keys), source.describe()
    else:
        by_key = {t.key: t for t in tasks}
        task_map, task_source = {k: by_key[k] for k in keys if k in by_key}, "the run's tasks"
    mutation_path = find_mutation_csv(run.workdir, mutation_csv, official_curve)
    mutation = read_mutation_csv(mutation_path) if mutation_path else None
    document = render_report(
        run, task_map, task_source, mutation, str(mutation_path) if mutation_path else None
    )
    out_path = Path(out) if out else run.workdir / REPORT_FILE
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(document, encoding="utf-8")
    return out_path
