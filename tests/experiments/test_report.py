"""The report: statistics on a synthetic store (hand-computed), the paper's numbers beside ours, errors."""

from __future__ import annotations

import math

import pytest

from pipelag.cli import main
from pipelag.errors import PipelagError
from pipelag.experiments.definitions import Budget, Cell, Entry, Experiment, PlotSpec, Row, get_experiment, run_key
from pipelag.experiments.report import compute, markdown, mean_se, plot, report
from pipelag.experiments.store import ResultStore, make_record

BREAKOUT, SEAQUEST = "MinAtar/Breakout-v0", "MinAtar/Seaquest-v0"
BUDGET = Budget(0.5, seeds=3)


def put(store: ResultStore, cell: Cell, returns: list[float], budget: Budget = BUDGET) -> None:
    spec = cell.spec(budget)
    store.append([make_record(run_key(spec), s, {"return": r}, spec, 1.0) for s, r in enumerate(returns)])


def ppo(env, delta=None):
    return Cell(env, "ppo", delta)


@pytest.fixture
def store(tmp_path) -> ResultStore:
    s = ResultStore(tmp_path)
    put(s, ppo(BREAKOUT), [20, 22, 24, 1000])  # seed 3 is outside --seeds 3 and must be ignored
    put(s, Cell(BREAKOUT, "cnn", 1.0), [11, 13, 9])
    put(s, Cell(BREAKOUT, "cnn", 2.0), [5.5, 6.6])
    put(s, ppo(SEAQUEST), [10, 10, 10])
    put(s, Cell(SEAQUEST, "cnn", 1.0), [2, 4, 6])
    put(s, Cell(BREAKOUT, "cnn+pta-res", 1.0), [11, 13, 9])
    put(s, Cell(SEAQUEST, "cnn+pta-res", 1.0), [2, 4, 6])
    return s


def row_index(exp: Experiment, label: str, section: str = "") -> int:
    return next(i for i, r in enumerate(exp.rows) if r.label == label and r.section == section)


def test_mean_and_standard_error_use_ddof_1():
    s = mean_se([11, 13, 9])
    assert s.mean == 11 and s.n == 3 and s.se == pytest.approx(2 / math.sqrt(3))
    assert mean_se([4.0]).n == 1 and math.isnan(mean_se([4.0]).se)
    assert mean_se([1.0, None, float("nan"), 3.0]).mean == 2.0  # missing values are skipped
    assert mean_se([]).n == 0


def test_raw_and_normalised_scores_per_env_and_delta(store):
    exp = get_experiment("table9")
    res = compute(exp, BUDGET, store.root)
    e = res.entries[(row_index(exp, "CNN", "δ = 1"), "Breakout-v0")]
    assert (e.raw.mean, e.raw.n) == (11, 3) and e.raw.se == pytest.approx(1.154701, abs=1e-6)
    # ÷ 22, the mean of the baseline's seeds 0-2 (seed 3 excluded by --seeds 3)
    assert e.norm.mean == pytest.approx(0.5) and e.norm.se == pytest.approx(1.154701 / 22, abs=1e-6)
    assert e.paper.mean == 7.92 and e.paper.error == 0.84 and e.paper_norm == pytest.approx(7.92 / 20.81)
    e = res.entries[(row_index(exp, "CNN", "δ = 2"), "Breakout-v0")]  # same undelayed baseline at δ = 2
    assert e.norm.mean == pytest.approx(0.275) and e.norm.se == pytest.approx(0.025) and e.norm.n == 2
    e = res.entries[(row_index(exp, "CNN", "δ = 1"), "Seaquest-v0")]  # its own env's baseline (10)
    assert e.norm.mean == pytest.approx(0.4) and e.norm.se == pytest.approx(0.2 / math.sqrt(3))
    base = res.entries[(0, "Breakout-v0")]
    assert base.raw.mean == 22 and base.norm.mean == pytest.approx(1.0)
    assert res.seeds_used == {0, 1, 2}
    assert res.entries[(row_index(exp, "CNN", "δ = 1"), "Freeway-v0")].cells_done == 0  # not run: "—"


def test_a_baseline_per_delta_when_the_experiment_asks_for_it(store):
    put(store, ppo(BREAKOUT, 2.0), [10, 11, 12])  # instantaneous actor acting every 2 steps
    rows = tuple(Row(f"CNN δ={d:g}", {"Breakout": Entry((Cell(BREAKOUT, "cnn", d),))}, section=f"δ = {d:g}")
                 for d in (1.0, 2.0))
    exp = Experiment("perdelta", "Test", "t", ("Breakout",), rows, "returns", PlotSpec("bars"), baseline_delta="same")
    res = compute(exp, BUDGET, store.root)
    assert res.entries[(0, "Breakout")].norm.mean == pytest.approx(0.5)  # ÷ 22
    assert res.entries[(1, "Breakout")].norm.mean == pytest.approx(0.55)  # ÷ 11, not 22


def test_an_aggregate_averages_normalised_scores_per_seed(store):
    exp = get_experiment("table1")
    res = compute(exp, BUDGET, store.root)
    e = res.entries[(row_index(exp, "proj-to-action & res"), "MinAtar")]
    # per seed: mean of Breakout [.5, .5909, .4091] and Seaquest [.2, .4, .6] = [.35, .49545, .50455]
    assert e.norm.mean == pytest.approx(0.45) and e.norm.se == pytest.approx(0.050069, abs=1e-5)
    assert (e.cells_done, e.cells_total) == (2, 5) and e.raw is None
    assert e.paper.mean == 0.52 and e.paper.error == 0.06
    md = markdown(res)
    assert "| proj-to-action & res |" in md and "0.45 ± 0.05 (n=3) [2/5 runs] · paper 0.52 ± 0.06" in md
    assert "n/a · paper 0.45 ± 0.05" in md  # CNN proj-from-obs: unsupported, the paper's number still shown


def test_markdown_puts_the_papers_number_beside_ours(store):
    res = compute("table9", BUDGET, store.root)
    md = markdown(res)
    cnn1 = next(line for line in md.splitlines() if line.startswith("| CNN | δ = 1 |"))
    assert "11.0 ± 1.2 (n=3) · paper 7.92 ± 0.84" in cnn1  # raw, as printed in Table 9
    assert "4.00 ± 1.15 (n=3) · paper 8.41 ± 0.05" in cnn1
    norm = [line for line in md.splitlines() if line.startswith("| CNN | δ = 1 |")][1]
    assert "0.50 ± 0.05 (n=3) · paper 0.38" in norm  # 7.92 / 20.81
    assert "| CNN | δ = 0.4 | — · paper 16.88 ± 0.81" in md
    assert "budget 0.5, 3 seeds" in md and "MinAtar 5,000,192 steps (paper 10,000,000)" in md


def test_report_writes_markdown_and_plots(store, capsys):
    md, paths = report("table9", BUDGET, store.root)
    assert paths["markdown"].read_text() == md and paths["markdown"].name == "table9-b0.5-s3.md"
    assert paths["plot"].read_bytes()[:4] == b"\x89PNG"
    assert main(["report", "table1", "--budget", "0.5", "--seeds", "3", "--out", str(store.root)]) == 0
    assert "paper 0.52 ± 0.06" in capsys.readouterr().out
    assert (store.root / "reports" / "table1-b0.5-s3.png").exists()


def test_line_plots(tmp_path):
    s = ResultStore(tmp_path)
    for env in ("HalfCheetah-v4", "Walker2d-v4"):
        put(s, Cell(env, "sac", None), [100, 110, 120])
        for n in (2, 3):
            put(s, Cell(env, f"mlp{n}+pfo+aug", 4.0), [50 + n, 60 + n, 70])
    path = plot(compute("fig11", BUDGET, tmp_path), tmp_path / "fig11.png")
    assert path.read_bytes()[:4] == b"\x89PNG"


def test_missing_baseline_names_the_sweep_command(tmp_path):
    s = ResultStore(tmp_path)
    put(s, Cell(BREAKOUT, "cnn", 1.0), [11, 13, 9])
    with pytest.raises(PipelagError) as e:
        compute("table9", BUDGET, tmp_path)
    msg = str(e.value)
    assert "no instantaneous baseline run for ppo MinAtar/Breakout-v0 δ=1 cnn instantaneous" in msg
    assert f"`pipelag sweep table9 --budget 0.5 --seeds 3 --out {tmp_path}`" in msg


def test_no_results_and_unknown_experiment(tmp_path, capsys):
    with pytest.raises(PipelagError, match=f"no results for table10 .*`pipelag sweep table10 --out {tmp_path}`"):
        compute("table10", Budget(), tmp_path)
    with pytest.raises(PipelagError, match="Did you mean 'table1'"):
        compute("tabel1", Budget(), tmp_path)
    assert main(["report", "fig99", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "unknown experiment 'fig99'" in err and "fig1b, fig3, fig7, fig11, fig12" in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
