"""Turn the result store into the paper's tables and figures, our numbers beside the paper's.

Statistics (DESIGN §5):

* a cell's raw score = mean ± standard error (``ddof=1``) over its seeds of the final evaluation return;
* its normalised score per seed = return / B, where B = the mean return of the instantaneous baseline on
  the same env (same env options) at the same budget; the paper's baseline has no delay, so B is the
  same run for every δ of an env (an experiment with ``baseline_delta="same"`` uses one per δ);
* an entry averaging several cells (Table 1, Fig. 1b, Fig. 7) takes, for every seed present in all of
  its cells, the mean of that seed's normalised scores, then mean ± SE over those seeds;
* the paper's normalised number = its printed mean ÷ its printed baseline mean (Table 1 is printed
  normalised; an aggregate of several printed cells is the mean of their normalised values).
"""

from __future__ import annotations

import math
import os
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipelag.errors import PipelagError
from pipelag.experiments import paper_numbers
from pipelag.experiments.definitions import (
    DOMAINS,
    Budget,
    Cell,
    Entry,
    Experiment,
    PaperRef,
    describe_spec,
    domain_of,
    get_experiment,
    run_key,
)
from pipelag.experiments.store import ResultStore, StoreContents, atomic_write_text


# ============================================================================ statistics
@dataclass(frozen=True)
class Stat:
    mean: float
    se: float  # standard error, ddof=1 (nan for one seed)
    n: int

    @property
    def ok(self) -> bool:
        return self.n > 0 and math.isfinite(self.mean)


def mean_se(values) -> Stat:
    xs = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    n = len(xs)
    if n == 0:
        return Stat(math.nan, math.nan, 0)
    m = sum(xs) / n
    if n == 1:
        return Stat(m, math.nan, 1)
    var = sum((x - m) ** 2 for x in xs) / (n - 1)
    return Stat(m, math.sqrt(var / n), n)


# ============================================================================ computing an experiment
@dataclass
class EntryResult:
    raw: Stat | None  # single-cell entries only
    norm: Stat
    cells_done: int
    cells_total: int  # supported cells
    unsupported: str | None = None
    paper: paper_numbers.PaperNumber | None = None  # single printed cell
    paper_norm: float | None = None


@dataclass
class ExperimentResult:
    experiment: Experiment
    budget: Budget
    out: Path
    metric: str
    entries: dict[tuple[int, str], EntryResult] = field(default_factory=dict)  # (row index, column)
    missing_runs: list[str] = field(default_factory=list)
    unsupported: dict[str, int] = field(default_factory=dict)
    seeds_used: set[int] = field(default_factory=set)


def _returns(cell: Cell, budget: Budget, by_key: dict[str, dict[int, dict]], metric: str,
             seeds: int | None) -> dict[int, float]:
    recs = by_key.get(run_key(cell.spec(budget)), {})
    out = {}
    for s, r in recs.items():
        if seeds is not None and s >= seeds:
            continue
        v = r["return"] if metric == "return" else (r.get("metrics") or {}).get(metric)
        if v is None:
            continue
        out[s] = float(v)
    return out


def _sweep_command(exp: Experiment, budget: Budget, out: Path) -> str:
    return f"pipelag sweep {exp.cli_name or exp.name}{budget.cli_args()} --out {out}"


def _paper_lookup(ref: PaperRef, fallback_tables: tuple[str, ...]) -> paper_numbers.PaperNumber | None:
    for t in (ref.table, *fallback_tables):
        p = paper_numbers.lookup(t, ref.agent, ref.env, ref.delta)
        if p is not None:
            return p
    return None


_DEFAULT_BASELINE_TABLES = {"mujoco": ("7", "4"), "minatar": ("9",), "minigrid": ("10",), "atari": ("2",)}


def paper_normalised(ref: PaperRef, fallback_tables: tuple[str, ...] = ()) -> float | None:
    """The paper's normalised score for ``ref`` (printed value ÷ printed baseline on the same env)."""
    if ref.table == "1":
        p = paper_numbers.lookup("1", ref.agent, ref.env, None)
        return None if p is None else p.mean
    p = _paper_lookup(ref, fallback_tables)
    if p is None:
        return None
    dom = domain_of(ref.env)
    base = _paper_lookup(PaperRef(ref.table, dom.baseline, ref.env, None),
                         (*fallback_tables, *_DEFAULT_BASELINE_TABLES[dom.name]))
    if base is None or base.mean == 0:
        return None
    return p.mean / base.mean


def compute(experiment: Experiment | str, budget: Budget | None = None, out: str | os.PathLike = "runs", *,
            metric: str = "return", contents: StoreContents | None = None) -> ExperimentResult:
    """Scores of every entry of ``experiment`` from the store at ``out``. Raises PipelagError when the store
    has nothing for it, or when a result cannot be normalised because its baseline run is missing."""
    exp = get_experiment(experiment) if isinstance(experiment, str) else experiment
    budget = budget or Budget()
    out = Path(out)
    contents = contents if contents is not None else ResultStore(out).read()
    by_key = contents.by_key()
    res = ExperimentResult(exp, budget, out, metric)
    missing_baselines: dict[str, int] = {}
    any_data = False
    cache: dict[Cell, dict[int, float]] = {}

    def returns(c: Cell) -> dict[int, float]:
        if c not in cache:
            cache[c] = _returns(c, budget, by_key, metric, budget.seeds)
        return cache[c]

    for i, row in enumerate(exp.rows):
        for col, entry in row.entries.items():
            res.entries[(i, col)] = _entry(exp, entry, returns, res, missing_baselines, budget)
    for c in exp.cells():
        any_data |= bool(returns(c))
        if c.unsupported() is None and not returns(c):
            res.missing_runs.append(describe_spec(c.spec(budget)))
    if not any_data:
        raise PipelagError(f"no results for {exp.name} ({budget.describe()}) in {ResultStore(out).path}: run "
                           f"`{_sweep_command(exp, budget, out)}` first")
    if missing_baselines:
        which = "; ".join(f"{b} (needed by {n} cells)" for b, n in missing_baselines.items())
        raise PipelagError(f"cannot normalise {exp.name}: no instantaneous baseline run for {which} at "
                           f"{budget.describe()} in {out}. Run `{_sweep_command(exp, budget, out)}` "
                           "(it trains only what is missing)")
    return res


def _entry(exp: Experiment, entry: Entry, returns, res: ExperimentResult, missing_baselines: dict[str, int],
           budget: Budget) -> EntryResult:
    per_cell: list[dict[int, float]] = []  # normalised per seed, cells with data
    raw = None
    total, unsupported = 0, None
    for c in entry.cells:
        why = c.unsupported()
        if why:
            unsupported = why
            res.unsupported[why] = res.unsupported.get(why, 0) + 1
            continue
        total += 1
        r = returns(c)
        if not r:
            continue
        b = returns(c.baseline(exp.baseline_delta))
        bstat = mean_se(b.values())
        if not bstat.ok:
            key = describe_spec(c.baseline(exp.baseline_delta).spec(budget))
            missing_baselines[key] = missing_baselines.get(key, 0) + 1
            continue
        res.seeds_used |= set(r)
        if len(entry.cells) == 1:
            raw = mean_se(r.values())
        per_cell.append({s: (v / bstat.mean if bstat.mean != 0 else math.nan) for s, v in r.items()})
    if per_cell:
        common = set.intersection(*(set(d) for d in per_cell))
        norm = mean_se(sum(d[s] for d in per_cell) / len(per_cell) for s in sorted(common))
    else:
        norm = Stat(math.nan, math.nan, 0)
    out = EntryResult(raw, norm, len(per_cell), total, unsupported if total == 0 else None)
    if len(entry.paper) == 1 and entry.paper[0].table != "1":
        out.paper = _paper_lookup(entry.paper[0], exp.paper_baseline_tables)
    elif len(entry.paper) == 1:
        out.paper = paper_numbers.lookup("1", entry.paper[0].agent, entry.paper[0].env, None)
    if entry.paper:
        vals = [paper_normalised(r, exp.paper_baseline_tables) for r in entry.paper]
        out.paper_norm = sum(vals) / len(vals) if all(v is not None for v in vals) else None
    return out


# ============================================================================ Markdown
def _digits(x: float) -> int:
    a = abs(x)
    return 0 if a >= 100 else 1 if a >= 10 else 2 if a >= 0.1 else 3


def fmt_stat(s: Stat | None, digits: int | None = None) -> str:
    if s is None or not s.ok:
        return "—"
    d = _digits(s.mean) if digits is None else digits
    if not math.isfinite(s.se):
        return f"{s.mean:.{d}f} (n={s.n})"
    return f"{s.mean:.{d}f} ± {s.se:.{d}f} (n={s.n})"


def _norm_digits(s: Stat) -> int:
    return 3 if s.ok and math.isfinite(s.se) and s.se < 0.01 else 2


def _cell_text(e: EntryResult, which: str) -> str:
    if e.unsupported:
        ours = "n/a"
    elif which == "raw":
        ours = fmt_stat(e.raw)
    else:
        ours = fmt_stat(e.norm, _norm_digits(e.norm))
    if e.cells_total > 1 and 0 < e.cells_done < e.cells_total:
        ours += f" [{e.cells_done}/{e.cells_total} runs]"
    if which == "raw":
        paper = e.paper.format() + (" SD" if e.paper.error_kind == "sd" else "") if e.paper else "—"
    elif e.paper is not None and e.paper.table == "1":
        paper = e.paper.format()
    else:
        paper = f"{e.paper_norm:.2f}" if e.paper_norm is not None else "—"
    return f"{ours} · paper {paper}"


def markdown(res: ExperimentResult) -> str:
    exp, b = res.experiment, res.budget
    doms = sorted({c.domain.name for c in exp.cells()}, key=list(DOMAINS).index)
    steps = ", ".join(f"{DOMAINS[d].title} {b.steps(DOMAINS[d]):,} steps (paper {DOMAINS[d].steps:,})" for d in doms)
    lines = [f"## {exp.source}: {exp.title}", "",
             f"Ours: `{exp.name}`, {b.describe()} ({steps}), seeds {sorted(res.seeds_used) or '—'}, metric "
             f"`{res.metric}`, store `{ResultStore(res.out).path}`. Cells: ours mean ± SE over seeds (n) · paper.",
             ""]
    multi_section = len({r.section for r in exp.rows}) > 1

    def table(which: str, title: str) -> None:
        lines.append(f"### {title}")
        lines.append("")
        head = ["agent"] + (["δ"] if multi_section else []) + list(exp.columns)
        lines.append("| " + " | ".join(head) + " |")
        lines.append("|" + "---|" * len(head))
        for i, row in enumerate(exp.rows):
            cells = [row.label] + ([row.section or "—"] if multi_section else [])
            for col in exp.columns:
                e = res.entries.get((i, col))
                cells.append(_cell_text(e, which) if e is not None else "")
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")

    if exp.kind == "returns":
        table("raw", "Returns (paper: as printed, SE unless marked SD)")
        table("norm", "Normalised (÷ the instantaneous baseline on the same env, same budget)")
    else:
        table("norm", "Normalised (÷ the instantaneous baseline on the same env, same budget), averaged as the "
                      "paper does")
    if res.unsupported:
        lines += [f"- unsupported ({n} cells): {why}" for why, n in res.unsupported.items()]
    if res.missing_runs:
        lines.append(f"- {len(res.missing_runs)} runs not in the store yet (`{_sweep_command(exp, b, res.out)}`)")
    lines += [f"- {n}" for n in exp.notes]
    return "\n".join(lines).rstrip() + "\n"


# ============================================================================ plots
def plot(res: ExperimentResult, path: str | os.PathLike) -> Path:
    """The experiment's figure as a PNG (matplotlib, Agg backend): ours with SE, the paper's as black marks."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    exp = res.experiment
    raw = exp.plot.y == "raw"

    def val(e: EntryResult) -> tuple[float, float, float]:
        s = e.raw if raw else e.norm
        p = (e.paper.mean if (raw and e.paper) else e.paper_norm) if not (e.paper and e.paper.table == "1") \
            else e.paper.mean
        return ((s.mean if s and s.ok else math.nan), (s.se if s and s.ok else math.nan),
                (p if p is not None else math.nan))

    ylabel = "return" if raw else "normalised return"
    if exp.plot.kind == "lines":
        cols = list(exp.columns)
        fig, axes = plt.subplots(1, len(cols), figsize=(4 * len(cols), 3.2), squeeze=False)
        series = list(dict.fromkeys(r.series for r in exp.rows))
        for ax, col in zip(axes[0], cols, strict=True):
            for k, s in enumerate(series):
                pts = sorted((r.x, *val(res.entries[(i, col)])) for i, r in enumerate(exp.rows)
                             if r.series == s and col in r.entries and r.x is not None)
                if not pts:
                    continue
                xs, ys, es, ps = zip(*pts, strict=True)
                color = f"C{k % 10}"
                ax.plot(xs, ys, "o-", color=color, label=s)
                ax.fill_between(xs, [y - (e if math.isfinite(e) else 0) for y, e in zip(ys, es, strict=True)],
                                [y + (e if math.isfinite(e) else 0) for y, e in zip(ys, es, strict=True)],
                                color=color, alpha=0.2)
                ax.plot(xs, ps, "x--", color=color, alpha=0.6)
            ax.set_title(col)
            ax.set_xlabel(exp.plot.xlabel)
            ax.set_ylabel(ylabel)
        axes[0][-1].legend(fontsize=7, title="ours (—) / paper (x--)", title_fontsize=7)
    else:
        # the baseline row is 1.0 by construction: not worth a panel of normalised bars
        baselines = {DOMAINS[d].baseline for d in DOMAINS}
        shown = [r for r in exp.rows if raw or r.series not in baselines]
        sections = list(dict.fromkeys(r.section for r in shown))
        fig, axes = plt.subplots(len(sections), 1, figsize=(max(6, 1.4 * len(exp.columns) + 3), 3 * len(sections)),
                                 squeeze=False)
        for ax, sec in zip(axes[:, 0], sections, strict=True):
            rows = [(i, r) for i, r in enumerate(exp.rows) if r.section == sec and r in shown]
            width = 0.8 / max(1, len(rows))
            for k, (i, r) in enumerate(rows):
                xs, ys, es, ps = [], [], [], []
                for j, col in enumerate(exp.columns):
                    if col not in r.entries:
                        continue
                    y, e, p = val(res.entries[(i, col)])
                    xs.append(j + (k - (len(rows) - 1) / 2) * width)
                    ys.append(y)
                    es.append(e if math.isfinite(e) else 0)
                    ps.append(p)
                ax.bar(xs, ys, width, yerr=es, color=f"C{k % 10}", label=r.label, capsize=2)
                ax.plot(xs, ps, "k_", markersize=10)
            ax.set_xticks(range(len(exp.columns)), exp.columns, fontsize=8)
            ax.set_ylabel(ylabel)
            if sec:
                ax.set_title(sec, fontsize=9)
            ax.legend(fontsize=6, ncol=2)
    paper_mark = "dashed crosses" if exp.plot.kind == "lines" else "black marks"
    # wrapped to the figure's width: a long budget description would run off a narrow figure
    width = max(40, int(fig.get_figwidth() * 14))  # characters of a 9-pt line per inch, roughly
    lines = textwrap.wrap(f"{exp.source}: {exp.title}", width) + textwrap.wrap(
        f"({res.budget.describe()}; paper = {paper_mark})", width)
    fig.suptitle("\n".join(lines), fontsize=9)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# ============================================================================ the command
def report_paths(exp: Experiment, budget: Budget, out: Path) -> tuple[Path, Path]:
    stem = f"{exp.name}-{budget.tag()}"
    return out / "reports" / f"{stem}.md", out / "reports" / f"{stem}.png"


def report(experiment: Experiment | str, budget: Budget | None = None, out: str | os.PathLike = "runs", *,
           metric: str = "return", plots: bool = True) -> tuple[str, dict[str, Any]]:
    """Write ``<out>/reports/<exp>-b<budget>.md`` (and ``.png``); returns (Markdown, paths)."""
    res = compute(experiment, budget, out, metric=metric)
    md = markdown(res)
    md_path, png_path = report_paths(res.experiment, res.budget, Path(out))
    paths: dict[str, Any] = {"markdown": atomic_write_text(md_path, md)}
    if plots:
        paths["plot"] = plot(res, png_path)
    return md, paths
