"""The `pipelag` command line. Every user mistake ends in one line naming the fix, never a traceback."""

from __future__ import annotations

import argparse
import sys

from pipelag.errors import PipelagError
from pipelag.runtime.compile_cache import enable_compile_cache


def _shape(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(x) for x in text.replace("x", ",").split(",") if x)
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"shape must look like 10,10,4 or 17 (got {text!r})") from e


def _default_shape(arch: str) -> tuple[int, ...]:
    return (17,) if arch.startswith("mlp") else (10, 10, 4)


def cmd_archs(args) -> int:
    from pipelag.networks import ARCHITECTURES

    for name, spec in ARCHITECTURES.items():
        print(f"{name:24s} {spec.family:4s} {spec.description}")
    return 0


def cmd_profile(args) -> int:
    from pipelag.networks import ARCHITECTURES, build_network

    archs = list(ARCHITECTURES) if args.arch == "all" else [args.arch]
    for arch in archs:
        shape = args.obs_shape or _default_shape(arch)
        net = build_network(arch, shape, args.num_outputs, delta=args.delta, num_layers=args.num_layers,
                            num_actions=args.num_outputs if args.action_history else None,
                            action_history=args.action_history)
        print(f"== {arch}  obs {shape}  ({net.num_layers} layers)")
        print(net.delay_profile().format())
    return 0


def cmd_demo(args) -> int:
    """Build every architecture at several δ, check the delay constraint and print the profiles."""
    from pipelag.networks import ARCHITECTURES, build_network

    print("pipelag demo: every architecture, its delay profile at δ = 0.5, 1, 2\n")
    for arch, spec in ARCHITECTURES.items():
        shape = _default_shape(arch)
        print(f"== {arch}: {spec.description}")
        for delta in (0.5, 1, 2):
            net = build_network(arch, shape, 6, delta=delta)
            prof = net.delay_profile(max_ticks=6)
            rows = ", ".join(f"k={k * prof.env_steps_per_tick}:{lo}-{hi}" for k, lo, hi in prof.rows)
            print(f"   δ={delta:<4g} acts on o_(t-{prof.min_delay_ticks * prof.env_steps_per_tick}) at the "
                  f"earliest; layers on paths o_(t-k) -> a_t: {rows}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pipelag", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("archs", help="list the architectures")
    p.set_defaults(func=cmd_archs)

    p = sub.add_parser("profile", help="print the delay profile of an architecture")
    p.add_argument("arch", help="architecture name, or 'all'")
    p.add_argument("--delta", type=float, default=1.0, help="neuron execution time δ in env steps")
    p.add_argument("--obs-shape", type=_shape, default=None, help="e.g. 10,10,4 (image) or 17 (vector)")
    p.add_argument("--num-layers", type=int, default=3, help="layers of an MLP (head included)")
    p.add_argument("--num-outputs", type=int, default=6)
    p.add_argument("--action-history", type=int, default=0)
    p.set_defaults(func=cmd_profile)

    p = sub.add_parser("demo", help="build every architecture and print its delay profile")
    p.set_defaults(func=cmd_demo)

    _add_train_parser(sub)
    for register in _plugin_parsers():
        register(sub)
    return parser


# flags `pipelag train` shares between algorithms: each algorithm fills its own defaults
_SHARED_TRAIN_FLAGS = ("env", "arch", "delta", "default_policy", "action_history", "init_activations", "seeds",
                       "seed", "instantaneous")


def _add_train_parser(sub) -> None:
    from pipelag.algorithms.ppo.cli import add_train_parser as add_ppo_flags
    from pipelag.algorithms.sac.cli import add_sac_arguments

    p = add_ppo_flags(sub)
    p.description = ("Train an agent with a pipelined actor: --algo ppo (discrete actions: MinAtar, MiniGrid; "
                     "whole training jit-compiled, seeds vmapped; or any gymnasium env stepped on the host) or "
                     "--algo sac (continuous actions: MuJoCo through gymnasium, or a JAX env). Shared flags default "
                     "per algorithm.")
    p.set_defaults(func=_run_train, **dict.fromkeys(_SHARED_TRAIN_FLAGS))
    add_sac_arguments(p, shared=False)


def _run_train(args) -> int:
    if getattr(args, "deterministic", False):  # before anything starts JAX's backend (XLA reads the flags then)
        from pipelag.runtime.xla_flags import DETERMINISTIC_GPU_FLAGS, add_default_xla_flags

        add_default_xla_flags(DETERMINISTIC_GPU_FLAGS)
    if args.algo == "sac":
        from pipelag.algorithms.sac.cli import run_train

        return run_train(args)
    if args.algo != "ppo":
        print(f"pipelag train: error: unknown algorithm {args.algo!r}; choose one of: ppo, sac", file=sys.stderr)
        return 2
    from pipelag.algorithms.ppo.cli import add_train_parser as add_ppo_flags
    from pipelag.algorithms.ppo.cli import run_train

    defaults = add_ppo_flags(argparse.ArgumentParser().add_subparsers())
    for name in _SHARED_TRAIN_FLAGS:
        if getattr(args, name) is None:
            setattr(args, name, defaults.get_default(name))
    return run_train(args)


def _plugin_parsers():
    """Subcommands that live beside their code (bench, sweep/report, analyze)."""
    from pipelag.experiments.cli import add_parsers as add_experiment_parsers
    from pipelag.experiments.connections import add_analyze_parser
    from pipelag.runtime.cli import add_bench_parser

    return [add_bench_parser, add_experiment_parsers, add_analyze_parser]


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    enable_compile_cache()  # compiled programs are reused across runs and sweep processes
    try:
        return int(args.func(args) or 0)
    except PipelagError as e:
        print(f"pipelag: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("pipelag: interrupted; finished results are on disk", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
