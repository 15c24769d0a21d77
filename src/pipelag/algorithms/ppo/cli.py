"""The ``pipelag train`` subcommand: ``add_train_parser(subparsers)`` and ``run_train(args)``.

Example::

    pipelag train --algo ppo --env MinAtar/Breakout-v0 --arch cnn-skip --delta 1 --action-history 1 \\
        --seeds 3 --total-steps 10000000 --out runs/breakout-skip-aug

``--resume --out DIR`` continues the run stored in DIR with its stored config (other flags ignored).
User mistakes (unknown algorithm/env/architecture, an architecture that does not fit the env's
observations, bad numbers) are reported as one line, exit status 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path
from typing import Any

from pipelag.algorithms.common.cli_args import parse_pairs
from pipelag.errors import PipelagError

ALGORITHMS = ("ppo",)


def add_train_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "train", help="train an agent with a pipelined actor (PPO) on a JAX or gymnasium environment",
        description="Train PPO with a pipelined actor and an undelayed critic, seeds vmapped, fully jit-compiled. "
                    "Writes config.json, metrics.jsonl, checkpoint.msgpack, curves.npz and results.json to --out.")
    p.add_argument("--algo", default="ppo", help="training algorithm (ppo)")
    p.add_argument("--env", default="MinAtar/Breakout-v0",
                   help="JAX env id (see `pipelag.envs.list_envs()`) or any registered gymnasium id (host backend)")
    p.add_argument("--env-option", action="append", default=[], metavar="KEY=VALUE",
                   help="env option, e.g. sticky_action_prob=0.25 or view=rgb (repeatable)")
    p.add_argument("--arch", default="cnn-skip", help="actor architecture (pipelag.networks.list_architectures())")
    p.add_argument("--instantaneous", action="store_true", help="instantaneous actor: the no-delay PPO baseline")
    p.add_argument("--delta", type=float, default=1.0, help="neuron execution time δ in env steps (default 1)")
    p.add_argument("--default-policy", default="repeat", help="β between agent actions for δ > 1: repeat | noop")
    p.add_argument("--action-history", type=int, default=0, help="actor sees its last k actions (a_t included)")
    p.add_argument("--frame-stack", type=int, default=0, help="stack the last k observations (0: off)")
    p.add_argument("--init-activations", default="zeros", help="activations at episode start: zeros | instant")
    p.add_argument("--seeds", type=int, default=1, help="number of seeds, trained together (vmapped)")
    p.add_argument("--seed", type=int, default=0, help="first seed (seeds are seed, seed+1, ...)")
    p.add_argument("--total-steps", type=int, default=None, help="agent steps per seed (default 10M)")
    p.add_argument("--num-envs", type=int, default=None)
    p.add_argument("--num-steps", type=int, default=None, help="rollout length (ticks)")
    p.add_argument("--eval-episodes", type=int, default=None)
    p.add_argument("--eval-every", type=int, default=None, help="evaluate every N updates (0: at the end only)")
    p.add_argument("--checkpoint-every", type=int, default=None, help="checkpoint every N updates")
    p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                   help="any other PPOConfig field, e.g. --set clip_eps=0.2 --set lr=3e-4 (repeatable)")
    p.add_argument("--time-budget", type=float, default=None, metavar="SECONDS",
                   help="train fewer steps if --total-steps would not fit in this wall time (decided early, "
                        "then restarted with the learning rate annealed over the shorter run)")
    p.add_argument("--out", default=None, help="run directory (results, checkpoints); none: nothing written")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its checkpoint")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    p.add_argument("--deterministic", action="store_true",
                   help="on a GPU: the same seed gives the same numbers every run (XLA's deterministic ops; "
                        "slower, see docs/ppo.md). A CPU is deterministic without it")
    p.set_defaults(func=run_train)
    return p


def config_from_args(args: argparse.Namespace):
    """(PPOConfig, seeds) from parsed arguments (or from the run directory when resuming)."""
    from pipelag.algorithms.common.io import read_json
    from pipelag.algorithms.ppo.config import PPOConfig

    if args.algo not in ALGORITHMS:
        raise PipelagError(f"unknown algorithm {args.algo!r}; choose one of: {', '.join(ALGORITHMS)}")
    if args.resume:
        if not args.out:
            raise PipelagError("--resume needs --out (the run directory to continue)")
        path = Path(args.out) / "config.json"
        if not path.is_file():
            raise PipelagError(f"nothing to resume: {path} does not exist")
        stored = dict(read_json(path)["config"])
        stored.pop("algo", None)
        if "batch" in stored:
            raise PipelagError(f"{args.out} holds the configs {stored['batch']} batched in one program; resume it "
                               "where it was started: the same `pipelag sweep` command, or "
                               "pipelag.algorithms.ppo.train.run(..., resume=True, batch=[...])")
        seeds = stored.pop("seeds")
        return PPOConfig.from_dict(stored), seeds
    if args.seeds < 1:
        raise PipelagError(f"--seeds must be ≥ 1, got {args.seeds}")
    fields = {f.name for f in dataclasses.fields(PPOConfig)}
    kw: dict[str, Any] = {
        "env_id": args.env, "env_options": parse_pairs(args.env_option, "--env-option"), "arch": args.arch,
        "instantaneous": args.instantaneous, "delta": args.delta, "default_policy": args.default_policy,
        "action_history": args.action_history, "frame_stack": args.frame_stack,
        "init_activations": args.init_activations,
    }
    for flag, name in (("total_steps", "total_timesteps"), ("num_envs", "num_envs"), ("num_steps", "num_steps"),
                       ("eval_episodes", "eval_episodes"), ("eval_every", "eval_every"),
                       ("checkpoint_every", "checkpoint_every"), ("backend", "backend")):
        if getattr(args, flag, None) is not None:
            kw[name] = getattr(args, flag)
    for k, v in parse_pairs(args.set, "--set").items():
        if k not in fields:
            raise PipelagError(f"--set {k}: unknown PPO config field; fields: {', '.join(sorted(fields))}")
        kw[k] = v
    if float(kw["delta"]).is_integer():
        kw["delta"] = float(kw["delta"])
    config = PPOConfig(**kw).validate()
    return config, [args.seed + i for i in range(args.seeds)]


def run_train(args: argparse.Namespace) -> int:
    """Run ``pipelag train``. Returns the exit status (0 ok, 2 user error: one line on stderr)."""
    from pipelag.runtime.xla_flags import add_default_xla_flags

    add_default_xla_flags()  # before anything starts JAX's backend (the user's own XLA_FLAGS win)
    try:
        config, seeds = config_from_args(args)
        from pipelag.algorithms.ppo.train import run

        run(config, seeds, out_dir=args.out, resume=args.resume, progress=not args.quiet,
            time_budget_s=args.time_budget)
    except PipelagError as e:
        print(f"pipelag train: error: {e}", file=sys.stderr)
        return 2
    return 0
