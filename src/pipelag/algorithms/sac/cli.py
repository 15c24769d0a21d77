"""Command line for SAC: ``add_train_parser(subparsers)`` (a ``train-sac`` subcommand) and
``run_train(args)``, which also accepts the namespace of ``pipelag train`` (``--algo sac``).

Example::

    pipelag train-sac --env HalfCheetah-v4 --arch mlp-proj-from-obs --delta 1 --action-history 2 \\
        --seeds 3 --total-steps 1000000 --out runs/cheetah-pfo-aug
    pipelag train-sac --env PointTarget-v0 --total-steps 3000 --set learning_starts=300 --out /tmp/toy

Baselines: ``--arch mlp --instantaneous --action-history 0`` (SAC), the same with ``--delta 2`` / ``3``
(SAC-repeat-2/3), ``--arch mlp-proj-from-obs --instantaneous --action-history 0`` (SAC w/ skip).
``--resume --out DIR`` continues the run stored in DIR with its stored config (other flags ignored).
User mistakes are reported as one line, exit status 2.

Wiring into ``pipelag train --algo sac``: the shared flags (``--env --env-option --arch --instantaneous
--delta --default-policy --action-history --init-activations --seeds --seed --total-steps
--eval-episodes --checkpoint-every --set --out --resume --quiet``) have the same names here; a flag
that is missing from the namespace or ``None`` takes SAC's default (:data:`SAC_DEFAULTS`).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path
from typing import Any

from pipelag.algorithms.common.cli_args import parse_pairs
from pipelag.errors import PipelagError

#: SAC's defaults for the flags it shares with ``pipelag train`` (PPO's defaults differ)
SAC_DEFAULTS: dict[str, Any] = {"env": "HalfCheetah-v4", "arch": "mlp-proj-from-obs", "action_history": 2,
                                "delta": 1.0, "default_policy": "repeat", "init_activations": "zeros",
                                "instantaneous": False, "seeds": 1, "seed": 0}


def add_sac_arguments(p: argparse.ArgumentParser, shared: bool = True) -> argparse.ArgumentParser:
    """Add SAC's flags to ``p``; ``shared=False`` adds only the SAC-specific ones (for a parser that
    already has the shared flags)."""
    if shared:
        p.add_argument("--env", default=None, help="HalfCheetah-v4 | Walker2d-v4 | Ant-v4 | Hopper-v4 (or -v5), "
                       "any gymnasium id with Box actions, or a JAX env (PointTarget-v0). Default HalfCheetah-v4")
        p.add_argument("--env-option", action="append", default=[], metavar="KEY=VALUE",
                       help="env option, e.g. speedup=2 or max_episode_steps=2000 for MuJoCo (repeatable)")
        p.add_argument("--arch", default=None, help="actor architecture, an mlp-* (default mlp-proj-from-obs)")
        p.add_argument("--instantaneous", action="store_true", default=None,
                       help="instantaneous actor (the SAC baselines)")
        p.add_argument("--delta", type=float, default=None, help="neuron execution time δ in env steps (default 1)")
        p.add_argument("--default-policy", default=None, help="β between agent actions for δ > 1: repeat | noop")
        p.add_argument("--action-history", type=int, default=None,
                       help="actor (and critic) see the last k actions, a_t included (default 2)")
        p.add_argument("--init-activations", default=None, help="activations at episode start: zeros | instant")
        p.add_argument("--seeds", type=int, default=None, help="number of seeds, trained in lockstep (default 1)")
        p.add_argument("--seed", type=int, default=None, help="first seed (seeds are seed, seed+1, ...)")
        p.add_argument("--total-steps", type=int, default=None, help="agent steps per seed (default 1M)")
        p.add_argument("--eval-episodes", type=int, default=None, help="evaluation episodes per seed (default 10)")
        p.add_argument("--checkpoint-every", type=int, default=None, help="checkpoint every N agent steps")
        p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                       help="any other SACConfig field, e.g. --set batch_size=128 (repeatable)")
        p.add_argument("--out", default=None, help="run directory (required)")
        p.add_argument("--resume", action="store_true", help="continue the run in --out from its checkpoint")
        p.add_argument("--quiet", action="store_true", help="no progress lines")
    p.add_argument("--backend", default=None, help="auto | jax (JAX envs, fully jitted) | host (gymnasium)")
    p.add_argument("--window", type=int, default=None, help="actor unroll window (default: its delay + 1)")
    p.add_argument("--num-layers", type=int, default=None, help="actor layers, head included (default 3)")
    p.add_argument("--hidden", type=int, default=None, help="actor hidden width (default 256)")
    p.add_argument("--batch-size", type=int, default=None, help="windows per update (default 256)")
    p.add_argument("--learning-starts", type=int, default=None, help="random steps before learning (default 10k)")
    p.add_argument("--buffer-size", type=int, default=None, help="replay buffer size (default 1M)")
    return p


def add_train_parser(subparsers, name: str = "train-sac") -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        name, help="train SAC with a pipelined actor (MuJoCo on the host, or a JAX env fully jitted)",
        description="Train SAC with a pipelined actor and undelayed twin critics. Writes config.json, "
                    "metrics.jsonl, checkpoint.msgpack, curves.npz, results.json and policy/ to --out.")
    add_sac_arguments(p)
    p.set_defaults(func=run_train)
    return p


def _arg(args, name: str, default: Any = None) -> Any:
    v = getattr(args, name, None)
    return SAC_DEFAULTS.get(name, default) if v is None else v


def config_from_args(args: argparse.Namespace):
    """``(SACConfig, num_seeds, first_seed)`` from parsed arguments (or the run directory when resuming)."""
    from pipelag.algorithms.common.io import read_json
    from pipelag.algorithms.sac.config import SACConfig

    if getattr(args, "resume", False):
        if not getattr(args, "out", None):
            raise PipelagError("--resume needs --out (the run directory to continue)")
        path = Path(args.out) / "config.json"
        if not path.is_file():
            raise PipelagError(f"nothing to resume: {path} does not exist")
        stored = dict(read_json(path)["config"])
        if stored.pop("algo", "sac") != "sac":
            raise PipelagError(f"{args.out} holds a run of another algorithm")
        num_seeds, seed = stored.pop("num_seeds"), stored.pop("seed")
        stored.pop("backend", None)
        if "batch" in stored:
            raise PipelagError(f"{args.out} holds the configs {stored['batch']} batched in one program; "
                               "resume it where it was started: the same `pipelag sweep` command, or "
                               "pipelag.algorithms.sac.train.run(..., resume=True, batch=[...])")
        return SACConfig.from_dict(stored), num_seeds, seed
    if not getattr(args, "out", None):
        raise PipelagError("--out is required (the run directory for results and checkpoints)")
    num_seeds, seed = int(_arg(args, "seeds")), int(_arg(args, "seed"))
    if num_seeds < 1:
        raise PipelagError(f"--seeds must be ≥ 1, got {num_seeds}")
    fields = {f.name for f in dataclasses.fields(SACConfig)}
    kw: dict[str, Any] = {
        "env_id": _arg(args, "env"), "env_options": parse_pairs(getattr(args, "env_option", None), "--env-option"),
        "arch": _arg(args, "arch"), "instantaneous": bool(_arg(args, "instantaneous")),
        "delta": float(_arg(args, "delta")), "default_policy": _arg(args, "default_policy"),
        "action_history": int(_arg(args, "action_history")), "init_activations": _arg(args, "init_activations"),
    }
    for flag, name in (("total_steps", "total_timesteps"), ("eval_episodes", "eval_episodes"),
                       ("checkpoint_every", "checkpoint_every"), ("backend", "backend"), ("window", "window"),
                       ("num_layers", "num_layers"), ("hidden", "hidden"), ("batch_size", "batch_size"),
                       ("learning_starts", "learning_starts"), ("buffer_size", "buffer_size")):
        if getattr(args, flag, None) is not None:
            kw[name] = getattr(args, flag)
    for k, v in parse_pairs(getattr(args, "set", None), "--set").items():
        if k not in fields:
            raise PipelagError(f"--set {k}: unknown SAC config field; fields: {', '.join(sorted(fields))}")
        kw[k] = v
    return SACConfig(**kw).validate(), num_seeds, seed


def run_train(args: argparse.Namespace) -> int:
    """Run SAC training. Returns the exit status (0 ok, 2 user error: one line on stderr)."""
    try:
        config, num_seeds, seed = config_from_args(args)
        from pipelag.algorithms.sac.train import run

        results = run(config, args.out, num_seeds=num_seeds, seed=seed, resume=bool(getattr(args, "resume", False)),
                      progress=not getattr(args, "quiet", False),
                      time_budget_s=getattr(args, "time_budget", None))
    except PipelagError as e:
        print(f"pipelag train: error: {e}", file=sys.stderr)
        return 2
    m = results["eval_return_mean_action"]
    if m["mean"] is not None and not getattr(args, "quiet", False):
        print(f"[sac] evaluation (mean action): {m['mean']:.2f} ± {m['stderr']:.2f} over {num_seeds} seed(s); "
              f"results in {args.out}/results.json")
    return 0
