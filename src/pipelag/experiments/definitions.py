"""Every table and figure of the paper as a grid of runs: env × variant (arch + augmentation) × δ × seeds × steps.

Reading guide
-------------
* A **variant** (``VARIANTS``) is one agent of the paper, named ``<base>[+modifier…]``: ``mlp3+pfo+aug`` is
  the paper's "three layers w/ proj-from-obs & aug". It fixes our architecture (``pipelag archs``), the
  number of layers (MLPs) and whether the domain's history augmentation is on.
* A **domain** (``DOMAINS``) fixes the algorithm, the envs, the paper's steps and what "aug" means there
  (MuJoCo: last 2 actions, MinAtar: last action, MiniGrid: 4 frames).
* A **cell** is one (env, δ, variant) of a table; its **spec** is the plain dict handed to the trainer
  (``sweep.run_config``) and hashed into the run's key, so the same run shared by several experiments
  (Table 7 and Fig. 3…) is trained once.
* An **experiment** is rows × columns of **entries**; an entry averages one or more cells (Table 1 and
  Fig. 1b average a whole domain) and points at the paper's number(s) for it.
* A **budget** scales the steps (``fraction``) and the number of seeds without changing the grid; it also
  carries the ``--set`` trainer options and how MuJoCo cells run (``--mujoco gym|mjx``, ``--env-option``).

The mapping from the paper's names to ours is documented in ``docs/experiments.md``.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import math
from dataclasses import dataclass, field
from typing import Any

from pipelag.errors import PipelagError

MUJOCO_ENVS = ("HalfCheetah-v4", "Walker2d-v4", "Ant-v4", "Hopper-v4")
MINATAR_ENVS = tuple(f"MinAtar/{g}-v0" for g in ("Breakout", "Seaquest", "Freeway", "Asterix", "SpaceInvaders"))
MINIGRID_ENVS = ("MiniGrid-Empty-Random-5x5-v0", "MiniGrid-DoorKey-5x5-v0")
ATARI_ENVS = tuple(f"ALE/{g}-v5" for g in ("Boxing", "Breakout", "BattleZone", "SpaceInvaders", "Assault", "Bowling",
                                            "Freeway"))


# ============================================================================ domains
@dataclass(frozen=True)
class Domain:
    name: str
    title: str
    algo: str  # "sac" | "ppo"
    envs: tuple[str, ...]
    steps: int  # the paper's training steps per run
    aug: tuple[tuple[str, int], ...]  # what "w/ aug" sets in the spec
    baseline: str  # the instantaneous variant every score is divided by
    step_granularity: int  # budget-scaled steps are rounded to a multiple of this (PPO: one rollout)
    always: tuple[tuple[str, int], ...] = ()  # set for every agent (Atari: 4-frame stack)
    unsupported: str | None = None


DOMAINS: dict[str, Domain] = {d.name: d for d in (
    Domain("mujoco", "MuJoCo", "sac", MUJOCO_ENVS, 1_000_000, (("action_history", 2),), "sac", 1000),
    Domain("minatar", "MinAtar", "ppo", MINATAR_ENVS, 10_000_000, (("action_history", 1),), "ppo", 32 * 32),
    Domain("minigrid", "MiniGrid", "ppo", MINIGRID_ENVS, 10_000_000, (("frame_stack", 4),), "ppo", 32 * 32),
    Domain("atari", "Atari", "ppo", ATARI_ENVS, 1_000_000, (("action_history", 1),), "ppo", 32 * 32,
           always=(("frame_stack", 4),),
           unsupported="Atari (Table 2) is defined but not runnable: the PPO trainer takes JAX environments "
                       "(pipelag.envs.make) and pipelag has no ALE adapter yet"),
)}


def domain_of(env: str) -> Domain:
    """The domain of a cell's env, or of a spec's env (``MJX/HalfCheetah-v4`` is MuJoCo's)."""
    for d in DOMAINS.values():
        if env in d.envs or (d.name == "mujoco" and str(env).removeprefix(MJX_PREFIX) in d.envs):
            return d
    raise PipelagError(f"no domain has env {env!r}")


# ============================================================================ how MuJoCo cells run
#: ``--mujoco``: "gym" trains a MuJoCo cell on the gymnasium CPU env (SAC's host loop), "mjx" on the JAX
#: port ``MJX/<Task>-v4`` (SAC's jitted driver, for a GPU); both with the budget's ``env_options``
MUJOCO_BACKENDS = ("gym", "mjx")
MJX_PREFIX = "MJX/"  # = pipelag.envs.mjx.MJX_PREFIX (that module imports jax)


def mjx_option_names() -> tuple[str, ...]:
    """The env options the MJX port accepts (its entry in the env registry)."""
    from pipelag.envs import registry

    return registry.env_options(f"{MJX_PREFIX}{MUJOCO_ENVS[0]}")


def gym_option_names() -> tuple[str, ...]:
    """The options pipelag adds to the gymnasium CPU env (it also takes the gymnasium class's own kwargs)."""
    import inspect

    from pipelag.envs.mujoco import mujoco_env_fn

    return tuple(n for n, p in inspect.signature(mujoco_env_fn).parameters.items()
                 if n != "env_id" and p.kind is p.POSITIONAL_OR_KEYWORD)


def _option_items(options) -> list[str]:
    """``["ls_iterations=8", "unroll_line_search=true"]``, as given on the command line."""
    return [f"{k}={v if isinstance(v, str) else json.dumps(v)}" for k, v in options]


# ============================================================================ variants
@dataclass(frozen=True)
class Variant:
    name: str
    label: str  # the paper's words
    arch: str  # our architecture (pipelag archs)
    num_layers: int | None = None  # MLPs only
    instantaneous: bool = False
    aug: bool = False
    #: a δ the variant always runs at (action-repeat baselines); None: the cell's δ (baselines: 1)
    delta: float | None = None
    dropout: float = 0.0
    unsupported: str | None = None


def _variants() -> dict[str, Variant]:
    v: list[Variant] = [
        # ---- MuJoCo (SAC, MLP actor, 256 units)
        Variant("sac", "SAC (instantaneous, no delay)", "mlp", 3, instantaneous=True),
        Variant("sac+repeat2", "SAC-repeat-2", "mlp", 3, instantaneous=True, delta=2.0),
        Variant("sac+repeat3", "SAC-repeat-3", "mlp", 3, instantaneous=True, delta=3.0),
        Variant("sac+pfo", "SAC w/ skip connections (instantaneous)", "mlp-proj-from-obs", 3, instantaneous=True),
        Variant("rlrd", "RLRD for delay of 1", "rlrd",
                unsupported="RLRD (Bouteiller et al. 2021) is not implemented in pipelag"),
        Variant("mlp1", "one layer", "mlp", 1),
        Variant("mlp2", "two layers", "mlp", 2),
        Variant("mlp3", "three layers", "mlp", 3),
        Variant("mlp3+lstm", "LSTM", "mlp-lstm", 3),
        Variant("mlp3+pta-res", "three layers w/ proj-to-action & res", "mlp-proj-to-action-res", 3),
        Variant("mlp3+pta", "three layers w/ proj-to-action", "mlp-proj-to-action", 3),
        Variant("mlp3+pfo", "three layers w/ proj-from-obs", "mlp-proj-from-obs", 3),
        Variant("mlp3+all", "three layers w/ all skips", "mlp-all-skips", 3),
        Variant("mlp2+aug", "two layers w/ aug", "mlp", 2, aug=True),
        Variant("mlp3+aug", "three layers w/ aug", "mlp", 3, aug=True),
        Variant("mlp3+lstm+aug", "LSTM w/ aug", "mlp-lstm", 3, aug=True),
        Variant("mlp2+pfo+aug", "two layers w/ proj-from-obs & aug", "mlp-proj-from-obs", 2, aug=True),
        Variant("mlp3+pfo+aug", "three layers w/ proj-from-obs & aug", "mlp-proj-from-obs", 3, aug=True),
        Variant("mlp3+all+aug", "three layers w/ all skips & aug", "mlp-all-skips", 3, aug=True),
        Variant("mlp4+pfo+aug", "four layers w/ proj-from-obs & aug", "mlp-proj-from-obs", 4, aug=True),
        Variant("mlp5+pfo+aug", "five layers w/ proj-from-obs & aug", "mlp-proj-from-obs", 5, aug=True),
        # ---- MinAtar / MiniGrid / Atari (PPO, CNN actor: 3 convs + 2 FCs)
        Variant("ppo", "PPO (instantaneous, no delay)", "cnn", instantaneous=True),
        Variant("cnn", "CNN", "cnn"),
        Variant("cnn+aug", "CNN w/ aug", "cnn", aug=True),
        Variant("cnn+lstm", "LSTM", "cnn-lstm"),
        Variant("cnn+lstm+aug", "LSTM w/ aug", "cnn-lstm", aug=True),
        Variant("cnn+pta", "CNN w/ proj-to-action", "cnn-skip"),
        Variant("cnn+pta-res", "CNN w/ skip (= proj-to-action & res)", "cnn-skip-res"),
        Variant("cnn+pta-res+aug", "CNN w/ skip & aug", "cnn-skip-res", aug=True),
        Variant("cnn+pta+lstm", "CNN w/ skip & lstm", "cnn-skip-lstm"),
        Variant("cnn+pta+aug+lstm", "CNN w/ skip & aug & lstm", "cnn-skip-lstm", aug=True),
        Variant("cnn+pfo", "CNN w/ proj-from-obs", "cnn-proj-from-obs",
                unsupported="pipelag has no CNN proj-from-obs architecture (Table 1's MinAtar/MiniGrid "
                            "'proj-from-obs' cell)"),
    ]
    for p in FIG12_DROPOUT:
        if p:
            v.append(Variant(f"mlp3+pfo+aug+dropout{p:g}", f"three layers w/ proj-from-obs & aug, dropout {p:g}",
                             "mlp-proj-from-obs", 3, aug=True, dropout=p))
    return {x.name: x for x in v}


FIG12_DROPOUT = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6)
VARIANTS: dict[str, Variant] = _variants()


def _dropout_variant(p: float) -> str:
    return "mlp3+pfo+aug" if p == 0 else f"mlp3+pfo+aug+dropout{p:g}"


# ============================================================================ budget, cells, specs
@dataclass(frozen=True)
class Budget:
    """``fraction`` of the paper's steps (rounded to the domain's granularity, at least one unit), if given
    ``seeds`` seeds for every run instead of the paper's count, and ``options``: trainer config fields set
    for every run (e.g. ``(("eval_episodes", 10),)`` for a quick look; they are part of the runs' specs).

    ``mujoco`` ("gym" or "mjx") and ``env_options`` say how the MuJoCo cells run: "mjx" trains the cell
    ``HalfCheetah-v4`` on ``MJX/HalfCheetah-v4``; ``env_options`` (e.g. ``(("ls_iterations", 8),)``) go to
    every MuJoCo run's env. Both are part of those runs' specs; other domains ignore them. The defaults
    leave every spec (and run key) as it was before they existed."""

    fraction: float = 1.0
    seeds: int | None = None
    options: tuple[tuple[str, Any], ...] = ()
    mujoco: str = "gym"
    env_options: tuple[tuple[str, Any], ...] = ()

    def __post_init__(self):
        if not (isinstance(self.fraction, int | float) and 0 < self.fraction <= 1):
            raise PipelagError(f"--budget must be a fraction in (0, 1], got {self.fraction!r}")
        if self.seeds is not None and (not isinstance(self.seeds, int) or self.seeds < 1):
            raise PipelagError(f"--seeds must be a positive integer, got {self.seeds!r}")
        object.__setattr__(self, "options", tuple(sorted((str(k), v) for k, v in dict(self.options).items())))
        if self.mujoco not in MUJOCO_BACKENDS:
            raise PipelagError(f"--mujoco must be one of {', '.join(MUJOCO_BACKENDS)}, got {self.mujoco!r}")
        opts = tuple(sorted((str(k), v) for k, v in dict(self.env_options).items()))
        object.__setattr__(self, "env_options", opts)
        names = [k for k, _ in opts]
        if self.mujoco == "mjx":
            bad = [k for k in names if k not in mjx_option_names()]
            if bad:
                raise PipelagError(f"--env-option {', '.join(bad)}: not an option of the MJX envs; valid options: "
                                   f"{', '.join(mjx_option_names())}")
        else:
            mjx_only = [k for k in names if k in mjx_option_names() and k not in gym_option_names()]
            if mjx_only:
                raise PipelagError(f"--env-option {', '.join(mjx_only)}: an option of the MJX port of the MuJoCo "
                                   "envs only, not of the gymnasium (CPU) envs: add --mujoco mjx, or drop it")

    def steps(self, domain: Domain) -> int:
        g = domain.step_granularity
        return max(g, int(round(domain.steps * self.fraction / g)) * g)

    def seed_list(self, paper_seeds: int) -> tuple[int, ...]:
        return tuple(range(self.seeds if self.seeds is not None else paper_seeds))

    @property
    def mujoco_default(self) -> bool:
        """True: MuJoCo cells run as they always did (gymnasium CPU env, no extra env options)."""
        return self.mujoco == "gym" and not self.env_options

    def describe(self) -> str:
        s = f"budget {self.fraction:g}"
        s += f", {self.seeds} seeds" if self.seeds is not None else ", the paper's seeds"
        s += "".join(f", {k}={v}" for k, v in self.options)
        if not self.mujoco_default:
            s += ", MuJoCo on " + ("MJX (MJX/<Task>-v4)" if self.mujoco == "mjx" else "gymnasium (CPU)")
            s += f" with env options {' '.join(_option_items(self.env_options))}" if self.env_options else ""
        return s

    def cli_args(self) -> str:
        """The command-line flags that give this budget."""
        s = f" --budget {self.fraction:g}" if self.fraction != 1 else ""
        s += f" --seeds {self.seeds}" if self.seeds is not None else ""
        s += "".join(f" --set {k}={json.dumps(v) if not isinstance(v, str) else v}" for k, v in self.options)
        s += f" --mujoco {self.mujoco}" if self.mujoco != "gym" else ""
        return s + "".join(f" --env-option {o}" for o in _option_items(self.env_options))

    def tag(self) -> str:
        """A file-name tag: ``b0.1-s3`` (plus a hash of the options; ``-mjx`` and a hash of the env options)."""
        def digest(x) -> str:
            return hashlib.sha1(json.dumps(x, default=str).encode()).hexdigest()[:6]

        s = f"b{self.fraction:g}" + (f"-s{self.seeds}" if self.seeds is not None else "")
        if self.options:
            s += "-o" + digest(self.options)
        s += "-mjx" if self.mujoco == "mjx" else ""
        return s + ("-e" + digest(self.env_options) if self.env_options else "")


@dataclass(frozen=True)
class Cell:
    env: str
    variant: str
    delta: float | None = None  # the table's δ (None: baseline, or a table without δ)
    seeds: int = 3  # the paper's seeds
    env_options: tuple[tuple[str, Any], ...] = ()

    @property
    def domain(self) -> Domain:
        return domain_of(self.env)

    @property
    def run_delta(self) -> float:
        v = VARIANTS[self.variant]
        if v.delta is not None:
            return float(v.delta)
        return 1.0 if self.delta is None else float(self.delta)

    def spec(self, budget: Budget) -> dict[str, Any]:
        """The plain dict the trainer receives (and that identifies the run)."""
        d, v = self.domain, VARIANTS[self.variant]
        env, env_options = self.env, dict(self.env_options)
        if d.name == "mujoco":  # --mujoco / --env-option (the defaults change nothing)
            env = f"{MJX_PREFIX}{env}" if budget.mujoco == "mjx" else env
            env_options.update(budget.env_options)
        spec: dict[str, Any] = {"algo": d.algo, "env": env, "delta": self.run_delta, "arch": v.arch,
                                "instantaneous": v.instantaneous, "action_history": 0, "frame_stack": 0,
                                "steps": budget.steps(d)}
        spec.update(dict(d.always))
        if v.aug:
            spec.update(dict(d.aug))
        if v.num_layers is not None:
            spec["num_layers"] = v.num_layers
        if v.dropout:
            spec["dropout"] = float(v.dropout)
        if env_options:
            spec["env_options"] = env_options
        options = dict(budget.options)
        if self.run_delta <= 1:  # no env step is left to the default policy β: the option changes nothing
            options.pop("default_policy", None)
        if options:
            spec["trainer_options"] = options
        return spec

    def unsupported(self) -> str | None:
        return self.domain.unsupported or VARIANTS[self.variant].unsupported

    def baseline(self, baseline_delta: str = "none") -> Cell:
        """The instantaneous run this cell is normalised by: same env, env options and budget; the paper's
        baseline has no delay, so it is one run for every δ (``baseline_delta="same"``: one per δ)."""
        delta = self.delta if baseline_delta == "same" else None
        return Cell(self.env, self.domain.baseline, delta, 3, self.env_options)


def run_key(spec: dict[str, Any]) -> str:
    """A short stable hash of a spec: the identity of a run in the result store."""
    blob = json.dumps(spec, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha1(blob.encode()).hexdigest()[:12]


def describe_spec(spec: dict[str, Any]) -> str:
    extra = [f"{k}={spec[k]}" for k in ("num_layers", "action_history", "frame_stack", "dropout") if spec.get(k)]
    for group in ("env_options", "trainer_options"):
        extra += [f"{k}={v}" for k, v in sorted((spec.get(group) or {}).items())]
    inst = " instantaneous" if spec.get("instantaneous") else ""
    return (f"{spec['algo']} {spec['env']} δ={spec['delta']:g} {spec['arch']}{inst} "
            f"{' '.join(extra)} steps={spec['steps']}").replace("  ", " ")


# ============================================================================ experiments
@dataclass(frozen=True)
class PaperRef:
    table: str
    agent: str
    env: str  # for Table 1: the domain name
    delta: float | None


@dataclass(frozen=True)
class Entry:
    cells: tuple[Cell, ...]
    #: the paper's number(s): one ref → shown as printed; several → the mean of their normalised values
    paper: tuple[PaperRef, ...] = ()


@dataclass(frozen=True)
class Row:
    label: str
    entries: dict[str, Entry]  # column → entry
    section: str = ""
    series: str = ""  # plots: line / bar group
    x: float | None = None  # plots with an x axis (δ, layers, dropout)


@dataclass(frozen=True)
class PlotSpec:
    kind: str  # "bars": groups = columns, one bar per row (a panel per section); "lines": panel per column
    xlabel: str = ""
    y: str = "normalised"  # or "raw"


@dataclass(frozen=True)
class Experiment:
    name: str
    source: str  # "Table 9", "Figure 3"
    title: str
    columns: tuple[str, ...]
    rows: tuple[Row, ...]
    #: "returns": a table of raw returns (our raw ± SE beside the paper's, then normalised);
    #: "normalised": averages of normalised scores only
    kind: str
    plot: PlotSpec
    notes: tuple[str, ...] = ()
    baseline_delta: str = "none"
    paper_baseline_tables: tuple[str, ...] = ()  # where the paper's normaliser is printed
    #: command-line selection that gives this experiment (``table9 --columns Breakout-v0``; "" = its name)
    cli_name: str = ""

    # ------------------------------------------------------------------ the grid
    def cells(self) -> list[Cell]:
        """Every cell the report needs (baselines included), each once, in table order."""
        out: dict[Cell, None] = {}
        for row in self.rows:
            for e in row.entries.values():
                for c in e.cells:
                    out.setdefault(c.baseline(self.baseline_delta))
        for row in self.rows:
            for e in row.entries.values():
                for c in e.cells:
                    out.setdefault(c)
        return list(out)

    def tasks(self, budget: Budget) -> list[Task]:
        """One task per distinct run (spec), with the union of the seeds its cells ask for."""
        by_key: dict[str, Task] = {}
        for c in self.cells():
            spec = c.spec(budget)
            key = run_key(spec)
            seeds = budget.seed_list(c.seeds)
            if key in by_key:
                t = by_key[key]
                by_key[key] = Task(key, spec, tuple(sorted(set(t.seeds) | set(seeds))), t.unsupported)
            else:
                by_key[key] = Task(key, spec, seeds, c.unsupported())
        return list(by_key.values())

    def only_columns(self, columns: list[str] | tuple[str, ...]) -> Experiment:
        """The same experiment restricted to some of its columns (e.g. Table 9's Breakout column); its
        name gets the columns (``table9-Breakout``) so its report does not overwrite the full one."""
        wanted = []
        for c in columns:
            key = c.strip().lower()
            match = [col for col in self.columns if col.lower() == key or col.lower().startswith(key + "-")]
            if len(match) != 1:
                raise PipelagError(f"{self.name} has no column {c!r}; its columns are: {', '.join(self.columns)}")
            wanted.append(match[0])
        rows = tuple(dataclasses.replace(r, entries={k: v for k, v in r.entries.items() if k in wanted})
                     for r in self.rows)
        rows = tuple(r for r in rows if r.entries)
        return dataclasses.replace(self, name=f"{self.name}-{'-'.join(wanted)}",
                                   columns=tuple(c for c in self.columns if c in wanted), rows=rows,
                                   cli_name=f"{self.cli_name or self.name} --columns {','.join(wanted)}")

    @property
    def has_mujoco(self) -> bool:
        """Whether some cell is a MuJoCo one (the cells ``--mujoco`` and ``--env-option`` apply to)."""
        return any(c.domain.name == "mujoco" for c in self.cells())

    def summary(self) -> str:
        envs = sorted({c.env for c in self.cells()})
        deltas = sorted({c.delta for c in self.cells() if c.delta is not None} or {1.0})
        return (f"{self.name:8s} {self.source:10s} {self.title} — {len(self.rows)} rows, {len(envs)} envs, "
                f"δ ∈ {{{', '.join(f'{d:g}' for d in deltas)}}}")


@dataclass(frozen=True)
class Task:
    key: str
    spec: dict[str, Any] = field(hash=False)
    seeds: tuple[int, ...]
    unsupported: str | None = None


# ---------------------------------------------------------------------------- builders
def _col(env: str) -> str:
    return env.split("/")[-1].removeprefix("MiniGrid-")


def _sec(delta: float | None) -> str:
    return "" if delta is None else f"δ = {delta:g}"


def _returns_table(name: str, source: str, title: str, envs: tuple[str, ...], tables: tuple[str, ...],
                   blocks: list[tuple[float | None, list[str]]], *, env_options: tuple = (),
                   seeds=lambda variant: 3, baseline_row: bool = True, notes: tuple[str, ...] = ()) -> Experiment:
    """A table of raw returns: a baseline row, then one row per variant in each δ block."""
    domain = domain_of(envs[0])
    paper_table = tables[0]
    rows = []
    if baseline_row:
        b = domain.baseline
        rows.append(Row(VARIANTS[b].label, {
            _col(e): Entry((Cell(e, b, None, 3, env_options),), (PaperRef(paper_table, b, e, None),)) for e in envs},
            series=b))
    for delta, variants in blocks:
        for v in variants:
            rows.append(Row(VARIANTS[v].label, {
                _col(e): Entry((Cell(e, v, delta, seeds(v), env_options),), (PaperRef(paper_table, v, e, delta),))
                for e in envs}, section=_sec(delta), series=v, x=delta))
    return Experiment(name, source, title, tuple(_col(e) for e in envs), tuple(rows), "returns",
                      PlotSpec("bars"), notes, paper_baseline_tables=tables)


MUJOCO_VARIANTS = ["mlp1", "mlp2", "mlp3", "mlp3+lstm", "mlp3+pta-res", "mlp3+pta", "mlp3+pfo", "mlp3+all",
                   "mlp2+aug", "mlp3+aug", "mlp3+lstm+aug", "mlp2+pfo+aug", "mlp3+pfo+aug", "mlp3+all+aug"]
MINIGRID_VARIANTS = ["cnn", "cnn+aug", "cnn+lstm", "cnn+lstm+aug", "cnn+pta-res", "cnn+pta-res+aug", "cnn+pta+lstm",
                     "cnn+pta+aug+lstm"]


def _seeds7(v: str) -> int:
    # Table 7's caption: ten seeds for two layers, three layers and w/ proj-from-obs, five for RLRD, else three
    return 10 if v in ("mlp2", "mlp3", "mlp3+pfo") else 5 if v == "rlrd" else 3


def _mujoco_table(delta: float) -> str:
    return "7" if delta <= 2 else "8"


def _paper_table_for(env: str, delta: float | None) -> str:
    d = domain_of(env).name
    if d == "mujoco":
        return _mujoco_table(delta or 1)
    return {"minatar": "9", "minigrid": "10", "atari": "2"}[d]


def _aggregate(variant_by_domain: dict[str, str], deltas_by_domain: dict[str, tuple[float, ...]],
               seeds=lambda v: 3) -> dict[str, Entry]:
    """One entry per domain: the mean normalised score over its envs × δs (paper value derived from the
    unnormalised tables)."""
    out = {}
    for dom, v in variant_by_domain.items():
        d = DOMAINS[dom]
        cells = tuple(Cell(e, v, delta, seeds(v)) for delta in deltas_by_domain[dom] for e in d.envs)
        refs = tuple(PaperRef(_paper_table_for(c.env, c.delta), v, c.env, c.delta) for c in cells)
        out[d.title] = Entry(cells, refs)
    return out


def _build() -> dict[str, Experiment]:
    ex: list[Experiment] = []
    all_d = {"mujoco": (1.0, 2.0, 3.0, 4.0), "minatar": (1.0,), "minigrid": (1.0,)}

    # ---- Table 1: skip-connection types, normalised and averaged per domain
    t1 = []
    for label, mlp, cnn in (("proj-from-obs", "mlp3+pfo", "cnn+pfo"), ("proj-to-action", "mlp3+pta", "cnn+pta"),
                            ("proj-to-action & res", "mlp3+pta-res", "cnn+pta-res"), ("all skips", "mlp3+all", None)):
        by_dom = {"mujoco": mlp} | ({"minatar": cnn, "minigrid": cnn} if cnn else {})
        entries = _aggregate(by_dom, all_d)
        entries = {col: Entry(e.cells, (PaperRef("1", by_dom[dom], dom, None),))
                   for (dom, _), (col, e) in zip(by_dom.items(), entries.items(), strict=True)}
        t1.append(Row(label, entries, series=label))
    ex.append(Experiment("table1", "Table 1", "Skip-connection types (normalised, averaged per domain)",
                         ("MuJoCo", "MinAtar", "MiniGrid"), tuple(t1), "normalised", PlotSpec("bars"),
                         ("MuJoCo: mean over 4 envs × δ ∈ {1, 2, 3, 4} (checked against Tables 7–8); MinAtar and "
                          "MiniGrid: mean over the envs at δ = 1, without augmentation (checked against Tables 9–10).",
                          "The CNN 'proj-from-obs' cells are unsupported (no such CNN architecture).")))

    # ---- Table 2: Atari subset (defined, not runnable)
    ex.append(_returns_table("table2", "Table 2", "Atari subset, 1M observations (mean ± SD)", ATARI_ENVS, ("2",),
                             [(1.0, ["cnn+aug", "cnn+pta-res+aug"])],
                             notes=("Unsupported: no ALE environment adapter for the PPO trainer yet.",
                                    "The paper reports standard deviations here; we report SE.")))
    # ---- Table 3: MinAtar with sticky actions 0.25
    ex.append(_returns_table("table3", "Table 3", "MinAtar, sticky actions 0.25, 10M samples, δ = 1", MINATAR_ENVS,
                             ("3",), [(1.0, ["cnn+aug", "cnn+pta-res+aug"])],
                             env_options=(("sticky_action_prob", 0.25),)))
    # ---- Table 4: SAC with action repeat
    ex.append(_returns_table("table4", "Table 4", "SAC and SAC with action repeat 2 / 3 (no delay)", MUJOCO_ENVS,
                             ("4",), [(None, ["sac+repeat2", "sac+repeat3"])],
                             notes=("SAC-repeat-k = the instantaneous actor at δ = k with the repeat default "
                                    "policy, i.e. the action repeated k times.",)))
    # ---- Table 5: instantaneous SAC with / without (traditional) skip connections
    ex.append(_returns_table("table5", "Table 5", "Instantaneous SAC with and without skip connections", MUJOCO_ENVS,
                             ("5", "4"), [(None, ["sac+pfo"])],
                             notes=("'skip connections' = proj-from-obs, the paper's MuJoCo default.",)))
    # ---- Tables 7 and 8: MuJoCo by δ
    ex.append(_returns_table("table7", "Table 7", "MuJoCo returns, δ = 1 and 2", MUJOCO_ENVS, ("7",),
                             [(1.0, ["rlrd", *MUJOCO_VARIANTS]), (2.0, MUJOCO_VARIANTS)], seeds=_seeds7))
    ex.append(_returns_table("table8", "Table 8", "MuJoCo returns, δ = 3 and 4", MUJOCO_ENVS, ("8", "7"),
                             [(3.0, MUJOCO_VARIANTS), (4.0, MUJOCO_VARIANTS)], seeds=_seeds7))
    # ---- Table 9: MinAtar
    ex.append(_returns_table("table9", "Table 9", "MinAtar returns, 10M samples", MINATAR_ENVS, ("9",),
                             [(0.4, ["cnn"]),
                              (1.0, ["cnn", "cnn+aug", "cnn+lstm", "cnn+lstm+aug", "cnn+pta-res", "cnn+pta-res+aug",
                                     "cnn+pta+aug+lstm"]),
                              (2.0, ["cnn", "cnn+lstm", "cnn+pta-res"])],
                             notes=("δ = 0.4: 2.5 layers per tick (the 3 convs in one tick, the 2 FCs in the next).",)))
    # ---- Table 10: MiniGrid
    ex.append(_returns_table("table10", "Table 10", "MiniGrid returns, 10M states", MINIGRID_ENVS, ("10",),
                             [(1.0, MINIGRID_VARIANTS), (4.0, MINIGRID_VARIANTS)],
                             notes=("δ = 4 with the paper's β (the agent's action repeated for the 4 env steps): four "
                                    "MiniGrid turns are no turn, so no agent can change direction and all fall to "
                                    "the walk-straight floor. The paper's δ = 4 numbers match its δ = 1 ones and its "
                                    "code has no MiniGrid frame skip, so they cannot come from this β. "
                                    "`--set default_policy=\"noop\"` trains β = minigrid's 'done' action instead.",)))

    # ---- Figure 1b: the agent families, normalised, per domain
    fams = (("default", "mlp3", "cnn"), ("w/ aug", "mlp3+aug", "cnn+aug"), ("LSTM", "mlp3+lstm", "cnn+lstm"),
            ("LSTM w/ aug", "mlp3+lstm+aug", "cnn+lstm+aug"), ("skip", "mlp3+pfo", "cnn+pta-res"),
            ("skip & aug", "mlp3+pfo+aug", "cnn+pta-res+aug"))
    rows = tuple(Row(label, _aggregate({"mujoco": m, "minatar": c, "minigrid": c}, all_d, _seeds7), series=label)
                 for label, m, c in fams)
    ex.append(Experiment("fig1b", "Figure 1b", "Normalised performance of the agent families per domain",
                         ("MuJoCo", "MinAtar", "MiniGrid"), rows, "normalised", PlotSpec("bars"),
                         ("MuJoCo averages 4 envs × δ ∈ {1, 2, 3, 4}; MinAtar (5 games) and MiniGrid (2 envs) δ = 1.",
                          "'skip' is proj-from-obs for MuJoCo and proj-to-action & res for the CNNs (paper §5.2).",
                          "The paper's values are derived from Tables 7–10 (the figure prints no numbers).")))

    # ---- Figure 3: MuJoCo per env, normalised, vs δ
    fig3_variants = ["mlp3", "mlp3+aug", "mlp3+lstm", "mlp3+lstm+aug", "mlp3+pfo", "mlp3+pfo+aug"]
    rows = []
    for v in fig3_variants:
        for delta in (1.0, 2.0, 3.0, 4.0):
            rows.append(Row(VARIANTS[v].label, {
                _col(e): Entry((Cell(e, v, delta, _seeds7(v)),), (PaperRef(_mujoco_table(delta), v, e, delta),))
                for e in MUJOCO_ENVS}, section=_sec(delta), series=v, x=delta))
    rows.append(Row(VARIANTS["rlrd"].label, {
        _col(e): Entry((Cell(e, "rlrd", 1.0, 5),), (PaperRef("7", "rlrd", e, 1.0),)) for e in MUJOCO_ENVS},
        section=_sec(1.0), series="rlrd", x=1.0))
    ex.append(Experiment("fig3", "Figure 3", "MuJoCo: normalised return of the agents vs δ",
                         tuple(_col(e) for e in MUJOCO_ENVS), tuple(rows), "normalised", PlotSpec("lines", "δ"),
                         ("The figure's agent list is our reading of §5.1 (the families of Fig. 1b and RLRD).",
                          "Paper values: Tables 7–8 divided by their SAC row.")))

    # ---- Figure 7: number of layers (MuJoCo), normalised, per δ averaged over the envs
    fig7 = ["mlp1", "mlp2", "mlp3", "mlp2+pfo+aug", "mlp3+pfo+aug"]
    rows = tuple(Row(VARIANTS[v].label, {f"δ = {d:g}": Entry(
        tuple(Cell(e, v, d, _seeds7(v)) for e in MUJOCO_ENVS),
        tuple(PaperRef(_mujoco_table(d), v, e, d) for e in MUJOCO_ENVS)) for d in (1.0, 2.0, 3.0, 4.0)}, series=v)
        for v in fig7)
    ex.append(Experiment("fig7", "Figure 7", "MuJoCo: number of layers with and without skip connections",
                         tuple(f"δ = {d:g}" for d in (1.0, 2.0, 3.0, 4.0)), rows, "normalised", PlotSpec("bars"),
                         ("Normalised, averaged over the 4 MuJoCo envs; paper values from Tables 7–8.",)))

    # ---- Figure 11: layers of the skip + aug agent at δ = 4
    fig11_envs = ("HalfCheetah-v4", "Walker2d-v4", "Ant-v4")
    rows = []
    for n in (2, 3, 4, 5):
        v = f"mlp{n}+pfo+aug"
        rows.append(Row(VARIANTS[v].label, {_col(e): Entry(
            (Cell(e, v, 4.0),), (PaperRef("8", v, e, 4.0),) if n <= 3 else ()) for e in fig11_envs},
            series="mlp+pfo+aug", x=float(n)))
    ex.append(Experiment("fig11", "Figure 11", "Layers of the skip-connected agent with aug at δ = 4",
                         tuple(_col(e) for e in fig11_envs), tuple(rows), "normalised",
                         PlotSpec("lines", "number of layers"),
                         ("The paper names neither the three envs nor the layer counts: HalfCheetah, Walker2d, Ant "
                          "and 2–5 layers are our choice. Paper values (2 and 3 layers) from Table 8.",)))

    # ---- Figure 12: dropout in every hidden layer, HalfCheetah, δ = 2
    rows = tuple(Row(f"dropout {p:g}", {"HalfCheetah-v4": Entry(
        (Cell("HalfCheetah-v4", _dropout_variant(p), 2.0),),
        (PaperRef("7", "mlp3+pfo+aug", "HalfCheetah-v4", 2.0),) if p == 0 else ())},
        series="mlp3+pfo+aug", x=p) for p in FIG12_DROPOUT)
    ex.append(Experiment("fig12", "Figure 12", "Dropout in every hidden layer (HalfCheetah, δ = 2)",
                         ("HalfCheetah-v4",), rows, "returns", PlotSpec("lines", "dropout probability", "raw"),
                         ("The agent 'with skip connections' = three layers w/ proj-from-obs & aug; dropout levels "
                          "0–0.6 are our choice. On MJX the sweep trains the rates > 0 as one vmapped program "
                          "(compatible configs batched; --no-batch: one program each).",),
                         paper_baseline_tables=("7",)))

    # ---- Figure 5: connection removal in the three-layer proj-to-action agent (Ant, δ = 4)
    ex.append(Experiment("fig5", "Figure 5", "Removing connections of the proj-to-action agent (Ant, δ = 4)",
                         ("Ant-v4",), (Row(VARIANTS["mlp3+pta"].label, {"Ant-v4": Entry(
                             (Cell("Ant-v4", "mlp3+pta", 4.0, seeds=1),), (PaperRef("8", "mlp3+pta", "Ant-v4", 4.0),))},
                             section=_sec(4.0), series="mlp3+pta", x=4.0),),
                         "returns", PlotSpec("bars"),
                         ("The sweep trains the intact agent (one seed, as the figure analyses one agent) and the "
                          "instantaneous SAC baseline the report normalises by; the removals themselves are "
                          "evaluated by `pipelag analyze connections --checkpoint <its run directory>` (Fig. 5: "
                          "mean ± one SD over 100 episodes).",
                          "Paper value: the intact agent's Table 8 entry (the figure prints no numbers)."),
                         paper_baseline_tables=("8", "7")))
    return {e.name: e for e in ex}


EXPERIMENTS: dict[str, Experiment] = _build()


def list_experiments() -> list[str]:
    return list(EXPERIMENTS)


def get_experiment(name: str) -> Experiment:
    key = str(name).strip().lower().replace(" ", "").replace("figure", "fig")
    if key in EXPERIMENTS:
        return EXPERIMENTS[key]
    close = difflib.get_close_matches(key, list(EXPERIMENTS), n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    raise PipelagError(f"unknown experiment {name!r}.{hint} Valid experiments: {', '.join(EXPERIMENTS)}")


def budget_from(fraction: float = 1.0, seeds: int | None = None) -> Budget:
    if isinstance(fraction, float) and not math.isfinite(fraction):
        raise PipelagError(f"--budget must be a fraction in (0, 1], got {fraction!r}")
    return Budget(float(fraction), seeds)
