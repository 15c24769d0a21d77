"""Figure 5: evaluate a trained SAC agent with connections of its actor removed (paper §5.3).

``pipelag analyze connections --checkpoint RUN_DIR --out DIR`` loads the final actor parameters of a
finished SAC run (``RUN_DIR/policy/seed_<s>``, written by the trainer, with ``RUN_DIR/config.json``),
cuts the edges of each removal with :func:`pipelag.networks.surgery.remove_connections`, and runs
``--episodes`` evaluation episodes of each on the run's own env and config (δ, default policy, episode
limit), with the mean action and with sampled actions. It writes, atomically, to ``DIR``:

* ``results.json``: every removal's edges and per-episode returns (per seed), mean and SD;
* ``connections.md``: the table (mean ± one SD over episodes, as Fig. 5);
* ``connections.png``: the bar plot (mean ± one SD per removal).

The default removals are :func:`pipelag.networks.surgery.connection_groups`: for the paper's
``mlp-proj-to-action`` agent ``intact``, ``obs-proj`` (a), ``fc1-proj`` (b), ``fc2-conn`` (c) and
``all``. ``--remove`` replaces them by a group name or comma-separated edge names (``obs->head``); the
intact agent is always evaluated first, as the reference.

Episodes: a JAX env evaluates every removal on the same episodes (the same keys); a gymnasium env runs
one env per (seed, removal) in lockstep, env ``i`` seeded ``eval_seed + i``.
"""

from __future__ import annotations

import io
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np

from pipelag.algorithms.common.cli_args import positive_int
from pipelag.algorithms.common.io import atomic_write_bytes, atomic_write_json, atomic_write_text, read_json
from pipelag.errors import PipelagError

MODES = {"mean": "mean_action", "sample": "sampled"}
RESULTS = "results.json"
TABLE = "connections.md"
PLOT = "connections.png"
_TRAIN_HINT = (
    "train one with e.g. `pipelag train --algo sac --env Ant-v4 --arch mlp-proj-to-action --delta 4 "
    "--action-history 0 --out RUN_DIR` (or `pipelag sweep fig5`), then pass that RUN_DIR"
)


# ============================================================================ the run
def load_run(run_dir: str | Path):
    """``(SACConfig, seeds, {seed: LoadedPolicy})`` of a finished SAC run directory."""
    from pipelag.algorithms.sac.config import SACConfig
    from pipelag.runtime.checkpoint import load_policy

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise PipelagError(f"no run directory at {run_dir}; {_TRAIN_HINT}")
    cfg_path = run_dir / "config.json"
    if not cfg_path.is_file():
        inner = sorted(p.parent.name for p in run_dir.glob("*/config.json"))
        where = f" (its sub-directories {', '.join(inner)} hold runs: point --checkpoint at one)" if inner else ""
        raise PipelagError(f"{run_dir} is not a run directory: no config.json{where}; {_TRAIN_HINT}")
    stored = dict(read_json(cfg_path).get("config") or {})
    algo = stored.pop("algo", None)
    if algo != "sac":
        raise PipelagError(
            f"{run_dir} holds a {algo or 'unknown'} run; connection analysis needs a SAC run (MLP actor); {_TRAIN_HINT}"
        )
    num_seeds, first = int(stored.pop("num_seeds", 1)), int(stored.pop("seed", 0))
    stored.pop("backend", None)
    config = SACConfig.from_dict(stored)
    seeds = list(range(first, first + num_seeds))
    policies = {}
    for s in seeds:
        path = run_dir / "policy" / f"seed_{s}"
        if not (path / "policy.json").is_file():
            if (run_dir / "checkpoint.msgpack").is_file():
                raise PipelagError(
                    f"the run in {run_dir} has not finished: {path} (its final actor parameters) is "
                    f"missing; finish it with `pipelag train-sac --resume --out {run_dir}`"
                )
            raise PipelagError(f"{path} is missing: {run_dir} holds no trained parameters; {_TRAIN_HINT}")
        policies[s] = load_policy(path)
    return config, seeds, policies


def removals_for(net, remove: list[str] | None) -> list[tuple[str, str, tuple[str, ...]]]:
    """``[(name, label, edges)]``: the intact agent, then the default groups or the ``--remove`` specs."""
    from pipelag.networks.surgery import connection_groups, resolve_removal

    groups = connection_groups(net)
    out = [("intact", groups["intact"].label, ())]
    specs = [g for g in groups if g != "intact"] if not remove else list(remove)
    for spec in specs:
        edges = resolve_removal(net, spec)
        if not edges:
            continue
        name = spec.strip()
        label = groups[name].label if name in groups else "without " + ", ".join(edges)
        if name not in [o[0] for o in out]:
            out.append((name, label, edges))
    return out


# ============================================================================ evaluation
def _evaluate(config, params_list: list[Any], episodes: int, mode: str, eval_seed: int) -> np.ndarray:
    """``[len(params_list), episodes]`` raw returns of the actor with each parameter set."""
    import jax
    import jax.numpy as jnp

    from pipelag.algorithms.sac.train import HostDriver, JaxDriver, resolve_backend

    stacked = jax.tree.map(lambda *xs: jnp.stack([jnp.asarray(x) for x in xs]), *params_list)
    if resolve_backend(config) == "jax":
        driver = JaxDriver(config)
        f = jax.jit(jax.vmap(lambda p, k: driver.evaluate(p, k, episodes, mode), in_axes=(0, None)))
        return np.asarray(f(stacked, jax.random.PRNGKey(eval_seed)))
    driver = HostDriver(config, len(params_list), eval_seed)
    try:
        return np.asarray(driver.evaluate(stacked, episodes, mode, eval_seed))
    finally:
        driver.close()


def _stats(returns: np.ndarray) -> dict[str, Any]:
    """``returns [seeds, episodes]`` → per-seed lists, mean and one SD over all episodes (pooled)."""
    flat = returns.reshape(-1).astype(np.float64)
    return {
        "returns": returns.tolist(),
        "per_seed_mean": returns.mean(axis=1).tolist(),
        "mean": float(flat.mean()),
        "sd": float(flat.std(ddof=1)) if flat.size > 1 else 0.0,
        "episodes": int(flat.size),
    }


def analyze_connections(
    run_dir: str | Path,
    out: str | Path,
    *,
    episodes: int = 100,
    remove: list[str] | None = None,
    modes: tuple[str, ...] = ("mean", "sample"),
    eval_seed: int = 1000,
    log=print,
) -> tuple[dict[str, Any], dict[str, Path]]:
    """Evaluate the run's actor with each removal; write results.json, the table and the plot to ``out``.
    Returns (results, written paths)."""
    from pipelag.networks.surgery import list_connections, remove_connections

    if isinstance(episodes, bool) or not isinstance(episodes, int) or episodes < 1:
        raise PipelagError(f"--episodes must be a positive integer, got {episodes!r}")
    bad = [m for m in modes if m not in MODES]
    if bad or not modes:
        raise PipelagError(f"unknown evaluation mode(s) {bad or modes}; choose from: {', '.join(MODES)}")
    config, seeds, policies = load_run(run_dir)
    net = policies[seeds[0]].net
    removals = removals_for(net, remove)
    params_list, index = [], []
    for s in seeds:
        for name, _, edges in removals:
            params_list.append(remove_connections(net, policies[s].params, edges))
            index.append((s, name))
    groups: list[dict[str, Any]] = [{"name": n, "label": lab, "removed": list(e)} for n, lab, e in removals]
    for mode in modes:
        log(
            f"[connections] {config.env_id} {config.arch} δ={config.delta:g}: {len(removals)} removals × "
            f"{len(seeds)} seed(s) × {episodes} episodes, {MODES[mode].replace('_', ' ')}"
        )
        rets = _evaluate(config, params_list, episodes, mode, eval_seed)
        for g, (name, _, _) in zip(groups, removals, strict=True):
            rows = [i for i, (_, n) in enumerate(index) if n == name]
            g[MODES[mode]] = _stats(rets[rows])
    results = {
        "analysis": "connections",
        "figure": "Figure 5",
        "run_dir": str(run_dir),
        "algo": "sac",
        "env_id": config.env_id,
        "arch": config.arch,
        "delta": config.delta,
        "num_layers": config.num_layers,
        "action_history": config.action_history,
        "default_policy": config.default_policy,
        "seeds": seeds,
        "episodes": episodes,
        "eval_seed": eval_seed,
        "modes": [MODES[m] for m in modes],
        "connections": list_connections(net),
        "groups": groups,
    }
    return results, write_outputs(results, out)


# ============================================================================ outputs
def _fmt(stat: dict[str, Any] | None) -> str:
    if not stat or stat.get("mean") is None or not math.isfinite(stat["mean"]):
        return "—"
    return f"{stat['mean']:.1f} ± {stat['sd']:.1f}"


def markdown(results: dict[str, Any]) -> str:
    modes = results["modes"]
    head = {"mean_action": "return, mean action", "sampled": "return, sampled actions"}
    lines = [
        f"# Connection removal (Figure 5): {results['arch']}, {results['num_layers']} layers, "
        f"{results['env_id']}, δ = {results['delta']:g}",
        "",
        f"Run: `{results['run_dir']}`; seeds {results['seeds']}; {results['episodes']} episodes per seed and "
        "removal; mean ± one SD over episodes.",
        "",
        "| removal | connections removed | " + " | ".join(head[m] for m in modes) + " | description |",
        "|---|---|" + "---|" * len(modes) + "---|",
    ]
    for g in results["groups"]:
        removed = ", ".join(f"`{e}`" for e in g["removed"]) or "none"
        lines.append(f"| {g['name']} | {removed} | " + " | ".join(_fmt(g.get(m)) for m in modes) + f" | {g['label']} |")
    lines += [
        "",
        "Removable connections of this actor: " + ", ".join(f"`{c}`" for c in results["connections"]),
        "",
        "Paper (§5.3, Ant-v4, δ = 4): the agent performs poorly without the projections from the observations "
        "(a) or from the first layer (b), and still gets some non-zero return without the connections from the "
        "second layer (c).",
        "",
    ]
    return "\n".join(lines)


def plot_png(results: dict[str, Any]) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups, modes = results["groups"], results["modes"]
    x = np.arange(len(groups))
    width = 0.8 / len(modes)
    names = {"mean_action": "mean action", "sampled": "sampled actions"}
    fig, ax = plt.subplots(figsize=(max(5.0, 1.3 * len(groups) + 1.5), 4.0))
    for i, m in enumerate(modes):
        means = [g[m]["mean"] for g in groups]
        sds = [g[m]["sd"] for g in groups]
        ax.bar(x + (i - (len(modes) - 1) / 2) * width, means, width, yerr=sds, capsize=4, label=names[m])
    ax.set_xticks(x)
    ax.set_xticklabels([g["name"] for g in groups], rotation=20, ha="right")
    ax.axhline(0.0, color="black", linewidth=0.6)
    ax.set_ylabel(f"return (mean ± SD, {results['episodes']} episodes/seed)")
    ax.set_title(f"Removing connections: {results['arch']}, {results['env_id']}, δ = {results['delta']:g}", fontsize=10)
    if len(modes) > 1:
        ax.legend(fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return buf.getvalue()


def write_outputs(results: dict[str, Any], out: str | Path) -> dict[str, Path]:
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise PipelagError(f"--out {out} exists and is not a directory; choose a directory")
    return {
        "results": atomic_write_json(out / RESULTS, results),
        "markdown": atomic_write_text(out / TABLE, markdown(results)),
        "plot": atomic_write_bytes(out / PLOT, plot_png(results)),
    }


# ============================================================================ command line
def cmd_connections(args) -> int:
    if args.list:
        from pipelag.networks.surgery import connection_groups, list_connections

        _, _, policies = load_run(args.checkpoint)
        net = next(iter(policies.values())).net
        print(f"connections of {net.name}: {', '.join(list_connections(net))}")
        for g in connection_groups(net).values():
            print(f"  {g.name:12s} {', '.join(g.edges) or '(nothing)':36s} {g.label}")
        return 0
    out = args.out or str(Path(args.checkpoint) / "connections")
    modes = tuple(m.strip() for m in args.modes.split(",") if m.strip())
    log = (lambda s: None) if args.quiet else (lambda s: print(s, file=sys.stderr, flush=True))
    results, paths = analyze_connections(
        args.checkpoint, out, episodes=args.episodes, remove=args.remove, modes=modes, eval_seed=args.eval_seed, log=log
    )
    print(markdown(results))
    print("written: " + ", ".join(str(p) for p in paths.values()))
    return 0


def add_analyze_parser(subparsers) -> None:
    """Register ``pipelag analyze`` (with its ``connections`` analysis) on the main CLI's subparsers."""
    p = subparsers.add_parser(
        "analyze", help="analyses of trained agents (connections: Fig. 5)", description="Analyses of trained agents."
    )
    sub = p.add_subparsers(dest="analysis", required=True)
    c = sub.add_parser(
        "connections",
        help="evaluate a SAC run with actor connections removed (Fig. 5)",
        description="Evaluate the final actor of a finished SAC run with connections removed at "
        "inference (paper §5.3, Fig. 5); writes results.json, connections.md and "
        "connections.png to --out.",
    )
    c.add_argument(
        "--checkpoint",
        required=True,
        metavar="RUN_DIR",
        help="a finished SAC run directory (config.json and policy/seed_<s>/)",
    )
    c.add_argument(
        "--episodes",
        type=positive_int,
        default=100,
        help="evaluation episodes per seed and removal (default 100, as the paper)",
    )
    c.add_argument(
        "--remove",
        action="append",
        default=None,
        metavar="GROUP|EDGE[,EDGE]",
        help="a removal: a group (intact, obs-proj, fc1-proj, fc2-conn, all for proj-to-action) or "
        "connections such as 'obs->head,fc1->head' (quote the > for the shell; repeatable; default: every group)",
    )
    c.add_argument(
        "--modes",
        default="mean,sample",
        help="mean (mean action), sample (sampled actions) or both (default mean,sample)",
    )
    c.add_argument("--eval-seed", type=int, default=1000, help="seed of the evaluation episodes (default 1000)")
    c.add_argument("--out", default=None, help="output directory (default RUN_DIR/connections)")
    c.add_argument("--list", action="store_true", help="print the actor's connections and groups, then stop")
    c.add_argument("--quiet", action="store_true", help="no progress lines")
    c.set_defaults(func=cmd_connections)
