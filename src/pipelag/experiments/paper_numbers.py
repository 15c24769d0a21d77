"""The paper's published numbers (Tables 1, 2, 3, 4, 5, 7, 8, 9, 10), transcribed to ``data/paper_results.csv``.

One CSV row per table cell:

``table``          "1" … "10"
``section``        the table's δ block as printed ("neuron execution time of 2"), or empty
``row``/``column`` the paper's row and column labels
``env``            our environment id (``MinAtar/Breakout-v0``, ``HalfCheetah-v4``, ``ALE/Boxing-v5``…);
                   Table 1 (averages over a domain): ``mujoco`` / ``minatar`` / ``minigrid``
``delta``          neuron execution time δ (empty: instantaneous baseline, or a table without δ)
``agent``          our variant name (``pipelag.experiments.definitions.VARIANTS``)
``architecture``   our architecture name (``pipelag archs``) the variant uses
``augmentation``   ``none``, ``actions:k`` (last k actions), ``frames:k`` (frame stack), or both joined by ``+``
``env_options``    e.g. ``sticky_action_prob=0.25`` (Table 3), ``atari`` (Table 2)
``mean``/``error`` as printed; ``error_kind`` is ``se`` (standard error) or ``sd`` (standard deviation)
``seeds``/``steps`` the paper's seeds and training steps for that cell
``note``           anything a reader must know (garbled text, assumptions)

``tests/experiments/test_paper_numbers.py`` checks every value against the text of the paper.
"""

from __future__ import annotations

import csv
import functools
from dataclasses import dataclass
from importlib import resources

from pipelag.errors import PipelagError

TABLES = ("1", "2", "3", "4", "5", "7", "8", "9", "10")


@dataclass(frozen=True)
class PaperNumber:
    table: str
    section: str
    row: str
    column: str
    env: str
    delta: float | None
    agent: str
    architecture: str
    augmentation: str
    env_options: str
    mean: float
    error: float
    error_kind: str
    seeds: int
    steps: int
    note: str
    printed: str = ""  # "mean ± error" with the paper's digits

    def format(self) -> str:
        return self.printed or f"{self.mean:g} ± {self.error:g}"


def _delta(text: str) -> float | None:
    return float(text) if text.strip() else None


@functools.cache
def load() -> tuple[PaperNumber, ...]:
    """Every transcribed cell, in the order of the paper."""
    text = resources.files("pipelag.experiments").joinpath("data/paper_results.csv").read_text(encoding="utf-8")
    out = []
    for r in csv.DictReader(text.splitlines()):
        out.append(PaperNumber(table=r["table"], section=r["section"], row=r["row"], column=r["column"], env=r["env"],
                               delta=_delta(r["delta"]), agent=r["agent"], architecture=r["architecture"],
                               augmentation=r["augmentation"], env_options=r["env_options"], mean=float(r["mean"]),
                               error=float(r["error"]), error_kind=r["error_kind"], seeds=int(r["seeds"]),
                               steps=int(r["steps"]), note=r["note"], printed=f"{r['mean']} ± {r['error']}"))
    return tuple(out)


def table(name: str) -> list[PaperNumber]:
    """The cells of one table ("7", or "Table 7")."""
    key = str(name).lower().removeprefix("table").strip()
    if key not in TABLES:
        raise PipelagError(f"no transcribed paper table {name!r}; tables: {', '.join(TABLES)}")
    return [p for p in load() if p.table == key]


def lookup(table_name: str, agent: str, env: str, delta: float | None) -> PaperNumber | None:
    """The paper's number for ``agent`` on ``env`` at ``delta`` in ``table_name``, or None."""
    for p in table(table_name):
        if p.agent == agent and p.env == env and _same_delta(p.delta, delta):
            return p
    return None


def _same_delta(a: float | None, b: float | None) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return abs(a - b) < 1e-9
