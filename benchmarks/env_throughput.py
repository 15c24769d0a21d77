"""Env steps per second of pipelag's JAX envs beside the original packages' python loops.

For every id of ``pipelag.envs.list_envs()`` (default options) and every batch size, a jitted
``lax.scan`` of vmapped ``env.step`` with uniformly random actions and auto-reset is timed (compile
excluded, ``block_until_ready``); in the same run the original package is stepped in a python loop
with random actions (minatar ``Environment.act`` followed by ``Environment.state()``, the observation;
minigrid ``env.step`` of the gymnasium env with the same observation wrappers), resetting at episode
ends. ratio = JAX steps/s ÷ original steps/s.

    python benchmarks/env_throughput.py --quick
    python benchmarks/env_throughput.py --out docs/env_throughput.md
"""

from __future__ import annotations

import argparse
import os
import platform
import time
import warnings

import jax
import numpy as np

from pipelag.envs import list_envs, make


def jax_steps_per_second(env, num_envs: int, scan_len: int, repeats: int, seed: int = 0) -> float:
    num_actions = env.num_actions

    def body(carry, _):
        state, key = carry
        key, k_act, k_step = jax.random.split(key, 3)
        actions = jax.random.randint(k_act, (num_envs,), 0, num_actions)
        state, step = jax.vmap(env.step)(jax.random.split(k_step, num_envs), state, actions)
        return (state, key), step.reward.sum()

    @jax.jit
    def rollout(state, key):
        (state, key), rewards = jax.lax.scan(body, (state, key), None, length=scan_len)
        return state, key, rewards.sum()

    key = jax.random.PRNGKey(seed)
    key, k_reset = jax.random.split(key)
    state, _ = jax.jit(jax.vmap(env.reset))(jax.random.split(k_reset, num_envs))
    compiled = rollout.lower(state, key).compile()
    state, key, total = compiled(state, key)  # warm-up (not timed)
    jax.block_until_ready((state, key, total))
    start = time.perf_counter()
    for _ in range(repeats):
        state, key, total = compiled(state, key)
    jax.block_until_ready((state, key, total))
    return num_envs * scan_len * repeats / (time.perf_counter() - start)


def original_minatar(env_id: str, env):
    from minatar import Environment

    orig = Environment(env.game, sticky_action_prob=getattr(env, "sticky_action_prob", 0.1))
    orig.seed(0)
    orig.reset()
    rng = np.random.default_rng(0)

    def step():
        _, done = orig.act(int(rng.integers(6)))
        if done:
            orig.reset()
        orig.state()  # the observation, as the JAX env produces it every step

    return step


def original_minigrid(env_id: str, env):
    import gymnasium as gym
    import minigrid  # noqa: F401  (registers the ids)
    from minigrid.wrappers import ImgObsWrapper, RGBImgPartialObsWrapper

    orig = gym.make(env_id)
    if getattr(env, "view", "rgb") == "rgb":
        orig = RGBImgPartialObsWrapper(orig, tile_size=8)
    orig = ImgObsWrapper(orig)
    orig.reset(seed=0)
    rng = np.random.default_rng(0)

    def step():
        _, _, terminated, truncated, _ = orig.step(int(rng.integers(7)))
        if terminated or truncated:
            orig.reset()

    return step


def original_steps_per_second(env_id: str, env, steps: int) -> float:
    make_step = original_minatar if env_id.startswith("MinAtar/") else original_minigrid
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        step = make_step(env_id, env)
        for _ in range(min(100, steps)):  # warm-up
            step()
        start = time.perf_counter()
        for _ in range(steps):
            step()
    return steps / (time.perf_counter() - start)


def main(argv=None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short run (CPU smoke test)")
    parser.add_argument("--num-envs", type=int, nargs="+", default=[1, 32, 1024])
    parser.add_argument("--env-steps", type=int, default=None,
                        help="JAX env steps per (env, batch size) measurement (default 2^17, quick 2^14)")
    parser.add_argument("--orig-steps", type=int, default=None,
                        help="python-loop steps of the original package (default 20000, quick 2000)")
    parser.add_argument("--envs", nargs="+", default=None, help="subset of env ids (default: all)")
    parser.add_argument("--out", default=None, help="write a Markdown table to this file")
    args = parser.parse_args(argv)
    env_steps = args.env_steps or (2**14 if args.quick else 2**17)
    orig_steps = args.orig_steps or (2000 if args.quick else 20000)
    env_ids = args.envs or list_envs()

    rows = []
    for env_id in env_ids:
        env = make(env_id)
        orig = original_steps_per_second(env_id, env, orig_steps)
        for n in args.num_envs:
            scan_len = max(8, min(256, env_steps // n))
            repeats = max(1, env_steps // (n * scan_len))
            sps = jax_steps_per_second(env, n, scan_len, repeats)
            rows.append((env_id, n, sps, orig, sps / orig))
            print(f"{env_id:32s} envs={n:5d}  jax {sps:12,.0f} steps/s   original {orig:10,.0f} steps/s"
                  f"   ratio {sps / orig:8.2f}", flush=True)

    device = jax.devices()[0]
    header = (
        f"JAX {jax.__version__} on {device.platform.upper()} ({device.device_kind}; "
        f"{os.cpu_count()} CPU cores visible, {platform.processor() or platform.machine()}); "
        f"{'--quick, ' if args.quick else ''}{env_steps} JAX env steps and {orig_steps} original "
        f"python-loop steps per measurement; default env options; random actions with auto-reset.\n\n"
    )
    table = "| env | envs | JAX steps/s | original steps/s (python loop, 1 env) | ratio JAX/original |\n"
    table += "|---|---:|---:|---:|---:|\n"
    for env_id, n, sps, orig, ratio in rows:
        table += f"| {env_id} | {n} | {sps:,.0f} | {orig:,.0f} | {ratio:.2f} |\n"
    text = header + table
    if args.out:
        os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
        with open(args.out, "w") as f:
            f.write(text)
        print(f"wrote {args.out}")
    return text


if __name__ == "__main__":
    main()
