"""SAC on the GPU: the jitted driver (env inside ``jit``) with an MJX MuJoCo task, 1 seed vs N seeds vmapped.

    python benchmarks/sac_gpu_speed.py                                  # MJX/HalfCheetah-v4, seeds 1 and 8
    python benchmarks/sac_gpu_speed.py --env MJX/Hopper-v4 --seeds 1 4 8 --json out.json
    python benchmarks/sac_gpu_speed.py --seeds 1 --env-option solver_iterations=4 --env-option ls_iterations=8
    python benchmarks/sac_gpu_speed.py --delta 2 --seeds 2 --dropout-rates 0.1 0.2 0.3 0.4 0.5 0.6
        # Fig. 12: 2 seeds at one dropout rate, then 2 seeds × 6 rates as one vmapped program
    python benchmarks/sac_gpu_speed.py --seeds 2 --deltas 1 2 3 4
        # Fig. 3: δ = 1 alone, δ = 4 alone, then δ ∈ {1, 2, 3, 4} × 2 seeds as one vmapped program

For every seed count, ``JaxDriver.warmup`` (random actions, the first ``learning_starts`` steps of the
paper's schedule) and ``JaxDriver.iterate`` (one env step + one critic update per step, ``policy_frequency``
actor updates every ``policy_frequency`` steps: the paper's schedule) are compiled, run once, then timed.
Reported: env steps/s per seed in both phases (training steps/s = critic updates/s), and the wall time of
1M paper-schedule steps (``learning_starts`` random steps, then training) for all the seeds together. The
baseline is 1 seed, measured in the same run: the ratio is the throughput of N seeds over 1 seed's.

``--dropout-rates``: every seed count runs first at the first rate alone, then at all the rates as one
vmapped program (configs batched as ``pipelag sweep`` batches Fig. 12's runs): members = seeds × rates.
``--deltas``: the smallest and the largest δ alone, then all the δs as one vmapped program (which loops
the largest δ's env steps per agent step, the others masked).
"""

from __future__ import annotations

import argparse
import json
import time

import jax


def _timed(fn, runner, label: str):
    """Compile ahead of time, run once (warm-up), then time a second call. Returns (runner, compile s,
    timed s); prints the compile time at once (on a GPU, compiling the MJX step can dominate)."""
    t0 = time.perf_counter()
    fn = fn.lower(runner).compile()
    compile_s = time.perf_counter() - t0
    print(f"    compiled {label} in {compile_s:.1f}s", flush=True)
    runner, _ = fn(runner)
    jax.block_until_ready(runner)
    t0 = time.perf_counter()
    runner, _ = fn(runner)
    jax.block_until_ready(runner)
    return runner, compile_s, time.perf_counter() - t0


def measure(config, seeds: int, warm_steps: int, train_steps: int, batch: list[dict] | None = None) -> dict:
    """``batch``: configs batched as one program (each seed at each, e.g. ``[{"dropout": 0.1}, …]``, as
    ``sac.train.run``'s ``batch``; ``config`` holds the largest δ / a rate > 0); None: ``config`` alone."""
    from pipelag.algorithms.sac.train import JaxDriver, _member_arrays

    d = JaxDriver(config)
    configs = len(batch) if batch else 1
    keys = jax.random.split(jax.random.PRNGKey(0), seeds * configs)
    members = () if not batch else (_member_arrays([b for b in batch for _ in range(seeds)]),)
    runner = jax.jit(jax.vmap(d.init))(keys, *members)
    seeds = seeds * configs  # members: every number below counts all of them
    warm = jax.jit(jax.vmap(lambda r: d.warmup(r, warm_steps)), donate_argnums=0)
    runner, warm_compile, warm_s = _timed(warm, runner, f"random phase ({seeds} seeds)")
    iters = max(1, train_steps // config.policy_frequency)
    train = jax.jit(jax.vmap(lambda r: d.iterate(r, iters)), donate_argnums=0)
    runner, train_compile, train_s = _timed(train, runner, f"training ({seeds} seeds)")
    steps = iters * config.policy_frequency
    warm_sps, train_sps = warm_steps / warm_s, steps / train_s  # per seed (all seeds step together)
    total, starts = 1_000_000, config.learning_starts
    wall_1m = starts / warm_sps + (total - starts) / train_sps
    return {"seeds": seeds // configs, "configs": configs, "members": seeds,
            "compile_random_phase_s": warm_compile, "compile_training_s": train_compile,
            "random_phase_steps_per_s_per_seed": warm_sps, "train_steps_per_s_per_seed": train_sps,
            "train_steps_per_s_all_seeds": train_sps * seeds, "critic_updates_per_s_all_seeds": train_sps * seeds,
            "wall_min_per_1M_steps_all_seeds": wall_1m / 60}


def main(argv=None):
    from pipelag.algorithms.common.cli_args import parse_pairs
    from pipelag.algorithms.sac import SACConfig

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--env", default="MJX/HalfCheetah-v4")
    p.add_argument("--arch", default="mlp-proj-from-obs")
    p.add_argument("--action-history", type=int, default=2)
    p.add_argument("--delta", type=float, default=1.0)
    p.add_argument("--seeds", type=int, nargs="+", default=[1, 8])
    p.add_argument("--warm", type=int, default=1000, help="timed random-phase steps")
    p.add_argument("--train", type=int, default=2000, help="timed training steps")
    p.add_argument("--env-option", action="append", default=[], metavar="KEY=VALUE",
                   help="passed to pipelag.envs.make (repeatable), e.g. solver_iterations=4 ls_iterations=8 "
                        "(MJX solver caps, docs/environments.md); default: none")
    p.add_argument("--dropout-rates", type=float, nargs="+", default=None,
                   help="batch these actor dropout rates as configs (each seed count: first rate alone, then all)")
    p.add_argument("--deltas", type=int, nargs="+", default=None,
                   help="batch these whole δs as configs (each seed count: smallest and largest δ alone, then all)")
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    if args.dropout_rates and args.deltas:
        p.error("give --dropout-rates or --deltas, not both")
    env_options = parse_pairs(args.env_option, "--env-option")
    cfg = SACConfig(env_id=args.env, env_options=env_options, arch=args.arch, action_history=args.action_history,
                    delta=args.delta, eval_episodes=0,
                    dropout=args.dropout_rates[0] if args.dropout_rates else 0.0).validate()
    dev = jax.devices()[0]
    opts = "".join(f" {k}={v}" for k, v in env_options.items())
    print(f"device: {dev.platform} {dev.device_kind} | {args.env}{opts} {args.arch} "
          f"action_history={args.action_history} δ={args.delta:g} | batch {cfg.batch_size}, buffer {cfg.buffer_size}, "
          f"learning_starts {cfg.learning_starts}",
          flush=True)
    rows = []
    variants = [(cfg, None)]
    if args.dropout_rates:
        variants.append((cfg, [{"dropout": r} for r in args.dropout_rates]))
    if args.deltas:
        lo, hi = cfg.replace(delta=float(min(args.deltas))), cfg.replace(delta=float(max(args.deltas)))
        variants = [(lo, None), (hi, None), (hi, [{"delta": float(d)} for d in args.deltas])]
    for s in args.seeds:
        for c, batch in variants:
            rows.append({**measure(c, s, args.warm, args.train, batch), "delta": c.delta,
                         "batch": batch})
            row = json.dumps({k: round(v, 2) if isinstance(v, float) else v for k, v in rows[-1].items()})
            print(f"  seeds={s} configs={rows[-1]['configs']}: {row}", flush=True)
    base = rows[0]["train_steps_per_s_all_seeds"] / rows[0]["members"]
    hdr = (f"{'seeds':>5} | {'δ':>3} | {'configs':>7} | {'random steps/s/member':>21} | {'train steps/s/member':>20} | "
           f"{'updates/s (all)':>15} | {'min per 1M (all members)':>24} | {'throughput vs 1 member':>22}")
    print(hdr)
    print("-" * len(hdr))
    for r in rows:
        r["throughput_vs_1_seed"] = r["train_steps_per_s_all_seeds"] / base
        print(f"{r['seeds']:>5} | {r['delta']:>3g} | {r['configs']:>7} | "
              f"{r['random_phase_steps_per_s_per_seed']:>21,.0f} | "
              f"{r['train_steps_per_s_per_seed']:>20,.0f} | {r['critic_updates_per_s_all_seeds']:>15,.0f} | "
              f"{r['wall_min_per_1M_steps_all_seeds']:>24.1f} | {r['throughput_vs_1_seed']:>21.2f}x")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"device": f"{dev.platform} {dev.device_kind}", "env": args.env, "env_options": env_options,
                       "arch": args.arch, "action_history": args.action_history, "delta": args.delta,
                       "dropout_rates": args.dropout_rates, "deltas": args.deltas, "rows": rows},
                      f, indent=2)
    return rows


if __name__ == "__main__":
    main()
