"""PPO training speed: env steps/s and wall time for N agent steps, 1 seed vs S seeds vmapped.

    python benchmarks/ppo_speed.py                       # Breakout, cnn-skip + action history 1, 1 and 16 seeds
    python benchmarks/ppo_speed.py --steps 1000000 --seeds 1 4 16 --json speed.json
    python benchmarks/ppo_speed.py --env MiniGrid-DoorKey-5x5-v0 --arch cnn --action-history 0
    python benchmarks/ppo_speed.py --compute-dtype float32 bfloat16 --minibatches 4 1 --profile /tmp/prof
    python benchmarks/ppo_speed.py --compute-dtype bfloat16 --minibatches 1 --rollout-unroll 1 8 --seeds 1 16
    python benchmarks/ppo_speed.py --env MiniGrid-DoorKey-5x5-v0 --arch cnn-skip-res --action-history 0 \
        --frame-stack 4 --seeds 1 2 --seed-batching vmap map   # 2 seeds vmapped vs one after another

For every seed count the whole training step (rollout + GAE + 4 epochs × ``--minibatches`` BPTT updates)
for N steps per seed is compiled ahead of time (``jit(...).lower(...).compile()``, reported separately),
run once to warm up, then timed (``block_until_ready``). Also timed alone: the rollout
(acting + env) part. The table gives steps/s over all seeds, per seed, the wall time to train all the
seeds (together) for 10M steps each, and the throughput relative to 1 seed.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import jax
import jax.numpy as jnp


def measure(config, seeds: int, updates: int, repeat: int = 1, rollout_split: bool = True) -> dict:
    # as config.seed_batching and config.seed_devices say (what the trainer does)
    from pipelag.algorithms.common.seeds import over_seeds, seed_device_count, vmapped_seed_count
    from pipelag.algorithms.ppo import PPO

    how = config.seed_batching
    devices = seed_device_count(config.seed_devices, seeds)
    ppo = PPO(config, vmapped_seeds=vmapped_seed_count(how, seeds // devices))
    keys = jnp.stack([jax.random.PRNGKey(s) for s in range(seeds)])
    rs = jax.jit(over_seeds(ppo.init, how, devices))(keys)
    jax.block_until_ready(rs)
    t0 = time.perf_counter()
    step = jax.jit(over_seeds(lambda r: ppo.run_updates(r, updates), how, devices)).lower(rs).compile()
    compile_s = time.perf_counter() - t0
    rollout = None
    if rollout_split:
        rollout = jax.jit(over_seeds(lambda r: jax.lax.scan(lambda r, _: (ppo.rollout(r)[0], None), r, None,
                                                          length=updates)[0], how, devices)).lower(rs).compile()
    out = step(rs)  # warm-up
    jax.block_until_ready(out)
    times, r_times = [], []
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = step(rs)
        jax.block_until_ready(out)
        times.append(time.perf_counter() - t0)
        if rollout is not None:
            jax.block_until_ready(rollout(rs))
            t0 = time.perf_counter()
            jax.block_until_ready(rollout(rs))
            r_times.append(time.perf_counter() - t0)
    wall = min(times)
    steps = updates * config.batch_size
    sps = steps * seeds / wall
    return {"seeds": seeds, "devices": devices, "rollout_unroll": ppo.rollout_unroll,
            "updates": updates, "agent_steps_per_seed": steps, "compile_s": compile_s,
            "wall_s": wall, "rollout_s": min(r_times) if r_times else float("nan"), "steps_per_s": sps,
            "steps_per_s_per_seed": sps / seeds,
            # wall time to train every one of the `seeds` agents (together, vmapped) for 10M steps
            "wall_s_per_10M_steps_each": 1e7 / (sps / seeds)}


def profile(config, out_dir: str, updates: int = 4) -> None:
    """Trace `updates` updates of one seed and print the kernels that took the most device time."""
    from gpu_trace import print_trace_summary

    from pipelag.algorithms.ppo import PPO

    ppo = PPO(config)
    rs = jax.jit(ppo.init)(jax.random.PRNGKey(0))
    step = jax.jit(lambda r: ppo.run_updates(r, updates))
    jax.block_until_ready(step(rs))
    with jax.profiler.trace(out_dir, create_perfetto_trace=True):
        jax.block_until_ready(step(rs))
    print_trace_summary(out_dir, updates, f"{config.compute_dtype}, {updates} updates, 1 seed; a step = an update")


def main(argv=None):
    from pipelag.algorithms.ppo import PPOConfig
    from pipelag.runtime.xla_flags import add_default_xla_flags

    added = add_default_xla_flags()  # what `pipelag train --algo ppo` sets (XLA_FLAGS given here win)
    print(f"XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}" + (f" (pipelag added {' '.join(added)})" if added else ""))

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--env", default="MinAtar/Breakout-v0")
    p.add_argument("--arch", default="cnn-skip")
    p.add_argument("--action-history", type=int, default=1)
    p.add_argument("--instantaneous", action="store_true")
    p.add_argument("--frame-stack", type=int, default=0, help="PPOConfig.frame_stack (Table 10's aug agents: 4)")
    p.add_argument("--steps", type=int, default=500_000, help="agent steps per seed to time")
    p.add_argument("--seeds", type=int, nargs="+", default=[1, 16])
    p.add_argument("--repeat", type=int, default=1)
    p.add_argument("--no-rollout-split", action="store_true", help="do not time the rollout part alone")
    p.add_argument("--compute-dtype", nargs="+", default=["float32"], choices=["float32", "bfloat16"],
                   help="one row group per dtype (bfloat16: mixed precision products)")
    p.add_argument("--minibatches", type=int, nargs="+", default=[1], help="num_minibatches values to time")
    p.add_argument("--rollout-unroll", type=int, nargs="+", default=[8],
                   help="lax.scan unroll factors of the rollout/GAE loops to time (PPOConfig.rollout_unroll; "
                        "default 8: what a long GPU run uses; 0 = the trainer's auto choice for the timed run)")
    p.add_argument("--conv-impl", nargs="+", default=["auto"], choices=["auto", "xla", "gemm"],
                   help="conv layers as lax.conv (xla), image patches × kernel (gemm), or auto (gemm on a CPU "
                        "and for vmapped seeds, xla for one seed on a GPU); PPOConfig.conv_impl")
    p.add_argument("--acting-conv-impl", nargs="+", default=["auto"], choices=["auto", "xla", "gemm"],
                   help="the actor's convs while acting (rollout, evaluation); auto: gemm on a GPU (one CUDA graph "
                        "per tick), else as --conv-impl; PPOConfig.acting_conv_impl")
    p.add_argument("--seed-batching", nargs="+", default=["auto"], choices=["auto", "vmap", "map"],
                   help="seeds vmapped or one after another (lax.map); auto: vmap on a GPU, map on a CPU; "
                        "PPOConfig.seed_batching")
    p.add_argument("--seed-devices", type=int, nargs="+", default=[0],
                   help="local devices the seeds are split over (0: auto, as many GPUs as split the seeds evenly; "
                        "PPOConfig.seed_devices); one row group per value")
    p.add_argument("--profile", default=None, help="write a profiler trace of the first variant here and "
                   "print its most expensive GPU kernels")
    p.add_argument("--json", default=None, help="write the rows here")
    args = p.parse_args(argv)
    base_cfg = PPOConfig(env_id=args.env, arch=args.arch, action_history=args.action_history,
                         instantaneous=args.instantaneous, frame_stack=args.frame_stack)
    updates = max(1, args.steps // base_cfg.batch_size)
    dev = jax.devices()[0]
    print(f"device: {dev.platform} {dev.device_kind} | {args.env} {args.arch} action_history={args.action_history}"
          f"{' instantaneous' if args.instantaneous else ''}"
          f" | {updates} updates × {base_cfg.batch_size} steps per seed",
          flush=True)
    if args.profile:
        profile(base_cfg.replace(compute_dtype=args.compute_dtype[0], num_minibatches=args.minibatches[0],
                                 rollout_unroll=args.rollout_unroll[0], conv_impl=args.conv_impl[0],
                                 acting_conv_impl=args.acting_conv_impl[0]), args.profile)
    rows = []
    import itertools

    for conv, acting, dtype, mb, unroll, how, seed_devices in itertools.product(
            args.conv_impl, args.acting_conv_impl, args.compute_dtype, args.minibatches, args.rollout_unroll,
            args.seed_batching, args.seed_devices):
        cfg = base_cfg.replace(compute_dtype=dtype, num_minibatches=mb, rollout_unroll=unroll, conv_impl=conv,
                               acting_conv_impl=acting, seed_batching=how, seed_devices=seed_devices)
        for s in args.seeds:
            if seed_devices > 1 and s % seed_devices:
                continue  # the seeds must split evenly over the devices
            r = measure(cfg, s, updates, args.repeat, rollout_split=not args.no_rollout_split)
            rows.append({"conv_impl": conv, "acting_conv_impl": acting, "compute_dtype": dtype, "num_minibatches": mb,
                         "seed_batching": how,
                         "frame_stack": args.frame_stack, **r})
            print(f"  {conv} (acting {acting}) {dtype} minibatches={mb} unroll={r['rollout_unroll']} seeds={s} "
                  f"({how}, {r['devices']} device(s)): "
                  f"compile {r['compile_s']:.1f}s, "
                  f"run {r['wall_s']:.2f}s (rollout part {r['rollout_s']:.2f}s)", flush=True)
    # the baseline: 1 seed (or the fewest timed) of the first variant, measured in this same run
    base = rows[0]["steps_per_s"] / rows[0]["seeds"]
    hdr = (f"{'conv':>4} | {'acting':>6} | {'dtype':>8} | {'mb':>2} | {'unroll':>6} | {'batching':>8} | {'seeds':>5} | "
           f"{'devs':>4} | "
           f"{'compile s':>9} | {'wall s':>7} | {'steps/s (all)':>13} | "
           f"{'steps/s/seed':>12} | {'s, 10M each':>11} | {'rollout %':>9} | {'throughput vs first row':>23}")
    print(hdr)
    print("-" * len(hdr))
    for r in rows:
        r["throughput_vs_first_row"] = r["steps_per_s"] / base
        print(f"{r['conv_impl']:>4} | {r['acting_conv_impl']:>6} | {r['compute_dtype']:>8} | "
              f"{r['num_minibatches']:>2} | {r['rollout_unroll']:>6} | "
              f"{r['seed_batching']:>8} | {r['seeds']:>5} | {r['devices']:>4} | {r['compile_s']:>9.1f} | "
              f"{r['wall_s']:>7.2f} | {r['steps_per_s']:>13,.0f} | {r['steps_per_s_per_seed']:>12,.0f} | "
              f"{r['wall_s_per_10M_steps_each']:>11.1f} | {100 * r['rollout_s'] / r['wall_s']:>8.0f}% | "
              f"{r['throughput_vs_first_row']:>22.2f}x")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"device": f"{dev.platform} {dev.device_kind}", "env": args.env, "arch": args.arch,
                       "action_history": args.action_history, "rows": rows}, f, indent=2)
    return rows


if __name__ == "__main__":
    main()
