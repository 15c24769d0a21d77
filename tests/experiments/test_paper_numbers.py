"""The transcribed paper numbers (data/paper_results.csv) against the text of the paper itself."""

from __future__ import annotations

import dataclasses
import os
import re
from pathlib import Path

import pytest

from pipelag.errors import PipelagError
from pipelag.experiments import paper_numbers
from pipelag.experiments.definitions import VARIANTS

PAPER = Path(os.environ.get("PIPELAG_PAPER", "/work/shared/reference/paper.txt"))
PAIR = re.compile(r"(-?[0-9]*\.?[0-9]+)\s*(?:\\pm|±)\s*(-?[0-9]*\.?[0-9]+)")
# where each table's body ends in the text
END = {"1": "all skips", "2": "Stochastic environments", "3": "C ADDITIONAL", "4": "Ablating observation",
       "5": "Figure 9", "7": "J FULL TRAJECTORY", "8": "Table 9:", "9": "Table 10:", "10": "(a) Rollout 1"}


@pytest.fixture(scope="module")
def paper_lines() -> list[str]:
    if not PAPER.exists():
        pytest.skip(f"paper text not found at {PAPER} (set PIPELAG_PAPER)")
    return PAPER.read_text(encoding="utf-8").splitlines()


def _block(lines: list[str], table: str) -> list[str]:
    i = next(k for k, line in enumerate(lines) if line.startswith(f"Table {table}:"))
    j = next(k for k in range(i + 1, len(lines)) if lines[k].startswith(END[table]))
    return lines[i + 1: j + 1]


def _num(text: str) -> float:
    return float(text)


def check_against_text(rows, lines: list[str]) -> list[str]:
    """Mismatches between transcribed rows and the paper's text: each row is looked up in its table's block,
    in its δ section, on the line whose first cell is its row label (Table 2: its game), in the column the
    table's header gives its column label."""
    problems = []
    for r in rows:
        block = _block(lines, r.table)
        if r.table == "9" and r.delta == 0.4:  # the garbled block: Breakout on the CNN line, the rest below
            k = next(k for k, line in enumerate(block) if "neuron execution time of 0.4" in line)
            cells = PAIR.findall(block[k]) + PAIR.findall(block[k + 1])
            header = ["Breakout-v0", "Seaquest-v0", "Freeway-v0", "Asterix-v0", "SpaceInv-v0"]
            got = cells[header.index(r.column)]
        else:
            header_line = next(line for line in block if line.startswith("\t") and not PAIR.search(line)
                               and "neuron execution" not in line)
            header = [h.strip() for h in header_line.split("\t")[1:]]
            section = ""
            got = None
            for line in block:
                m = re.search(r"neuron execution time of ([0-9.]+)", line)
                if m and not PAIR.search(line):
                    section = f"neuron execution time of {m.group(1)}"
                    continue
                first = line.split("\t")[0].strip()
                label, col = (r.column, r.row) if r.table == "2" else (r.row, r.column)
                want_section = r.section if r.table in ("7", "8", "9", "10") else ""
                if first == label and (section == want_section or r.table not in ("7", "8", "9", "10")):
                    cells = [c.strip() for c in line.split("\t")[1:]]
                    cell = cells[header.index(col)]
                    m = PAIR.search(cell)
                    got = (m.group(1), m.group(2)) if m else None
                    break
        if got is None:
            problems.append(f"table {r.table} {r.section!r} {r.row!r} {r.column!r}: not found in the text")
        elif (_num(got[0]), _num(got[1])) != (r.mean, r.error):
            problems.append(f"table {r.table} {r.section!r} {r.row!r} {r.column!r}: CSV {r.mean} ± {r.error}, "
                            f"paper {got[0]} ± {got[1]}")
    return problems


def test_every_transcribed_number_matches_the_paper_text(paper_lines):
    rows = paper_numbers.load()
    assert {r.table for r in rows} == set(paper_numbers.TABLES)
    assert check_against_text(rows, paper_lines) == []


def test_the_check_catches_a_typo(paper_lines):
    rows = list(paper_numbers.load())
    i = next(k for k, r in enumerate(rows) if r.table == "7" and r.agent == "mlp3+pfo" and r.delta == 2.0)
    rows[i] = dataclasses.replace(rows[i], mean=rows[i].mean + 1)
    j = next(k for k, r in enumerate(rows) if r.table == "9" and r.delta == 0.4 and r.env.endswith("Asterix-v0"))
    rows[j] = dataclasses.replace(rows[j], error=0.38)
    problems = check_against_text([rows[i], rows[j]], paper_lines)
    assert len(problems) == 2 and "4716" in problems[0] and "0.38" in problems[1]


@pytest.mark.parametrize("table, agent, env, delta, mean, error, kind", [
    ("9", "cnn", "MinAtar/Breakout-v0", 0.4, 16.88, 0.81, "se"),  # garbled δ = 0.4 block, first line
    ("9", "cnn", "MinAtar/Seaquest-v0", 0.4, 25.75, 3.65, "se"),  # … and the line below it
    ("9", "cnn", "MinAtar/SpaceInvaders-v0", 0.4, 78.55, 2.24, "se"),
    ("9", "cnn", "MinAtar/Freeway-v0", 1.0, 28.865, 4.31, "se"),
    ("9", "cnn+pta-res", "MinAtar/SpaceInvaders-v0", 2.0, 53.50, 3.67, "se"),
    ("9", "ppo", "MinAtar/Seaquest-v0", None, 25.94, 14.52, "se"),
    ("7", "mlp3+pfo", "HalfCheetah-v4", 1.0, 7892, 379, "se"),
    ("7", "rlrd", "Hopper-v4", 1.0, 3314, 157, "se"),
    ("8", "mlp3+pfo+aug", "Ant-v4", 4.0, 1911, 66, "se"),
    ("8", "mlp3+lstm", "Ant-v4", 3.0, 987, 690, "se"),
    ("10", "cnn+pta+lstm", "MiniGrid-DoorKey-5x5-v0", 4.0, 0.567, 0.2333, "se"),
    ("1", "mlp3+pta-res", "mujoco", None, 0.77, 0.05, "se"),
    ("1", "cnn+pta-res", "minigrid", None, 0.96, 0.002, "se"),
    ("2", "ppo", "ALE/BattleZone-v5", None, 3683, 375, "sd"),
    ("2", "cnn+pta-res+aug", "ALE/Freeway-v5", 1.0, 22.18, 0.34, "sd"),
    ("3", "cnn+pta-res+aug", "MinAtar/Freeway-v0", 1.0, 53.51, 0.84, "se"),
    ("4", "sac+repeat2", "Hopper-v4", None, 3520, 140, "se"),
    ("5", "sac+pfo", "Ant-v4", None, 5719, 176, "se"),
])
def test_spot_checks(table, agent, env, delta, mean, error, kind):
    p = paper_numbers.lookup(table, agent, env, delta)
    assert p is not None and (p.mean, p.error, p.error_kind) == (mean, error, kind)


def test_table_sizes_and_labels():
    count = {t: len(paper_numbers.table(t)) for t in paper_numbers.TABLES}
    # Table 7: SAC + RLRD + 14 agents × 2 δ, × 4 envs; Table 9: PPO + δ 0.4 (1) + δ 1 (7) + δ 2 (3), × 5 games
    assert count == {"1": 10, "2": 21, "3": 15, "4": 12, "5": 8, "7": 120, "8": 112, "9": 60, "10": 34}
    for p in paper_numbers.load():
        assert p.agent in VARIANTS, p
        assert p.error_kind == ("sd" if p.table == "2" else "se")
    with pytest.raises(PipelagError, match="tables: 1, 2, 3"):
        paper_numbers.table("6")


def test_table1_is_the_mean_of_the_detailed_tables():
    """Table 1 = normalised means of Tables 7–10 for the no-aug skip agents (our reading of which cells it
    averages, used by the table1 experiment)."""
    def norm(table, agent, env, delta, base_table):
        return (paper_numbers.lookup(table, agent, env, delta).mean
                / paper_numbers.lookup(base_table, "sac" if base_table == "7" else "ppo", env, None).mean)

    from pipelag.experiments.definitions import MINATAR_ENVS, MINIGRID_ENVS, MUJOCO_ENVS

    for agent, printed in (("mlp3+pfo", 0.79), ("mlp3+pta", 0.78), ("mlp3+pta-res", 0.77), ("mlp3+all", 0.75)):
        vals = [norm("7" if d <= 2 else "8", agent, e, d, "7") for e in MUJOCO_ENVS for d in (1.0, 2.0, 3.0, 4.0)]
        assert abs(sum(vals) / len(vals) - printed) < 0.011, agent
    vals = [norm("9", "cnn+pta-res", e, 1.0, "9") for e in MINATAR_ENVS]
    assert abs(sum(vals) / len(vals) - 0.52) < 0.011
    vals = [norm("10", "cnn+pta-res", e, 1.0, "10") for e in MINIGRID_ENVS]
    assert abs(sum(vals) / len(vals) - 0.96) < 0.011
