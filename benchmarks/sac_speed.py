"""SAC speed on a gymnasium MuJoCo env (CPU): pipelag's host driver beside a plain host loop of the same SAC.

Both loops run the same agent (``SACAgent``: actor, critics, losses, ``Learner.update``) with the
paper's sizes (3-layer 256-wide actor, 256-256 critics, batch 256, window = delay + 1, buffer 1M), in
the same process, one after the other:

* **pipelag host driver** (``HostDriver.run_steps``): the replay buffer in device memory, two jitted calls
  per env step (store the transition; update and pick the next actions) on the packed runner; the
  calls are dispatched from a worker thread beside the env step (``--overlap``: off, on, or both in
  the same process, off first).
* **plain host loop** (cleanRL style): numpy replay buffer on the host, per step a jitted ``act``,
  a numpy ``add``, numpy window sampling, a host→device copy of the batch and a jitted update.

Phases: random actions before ``learning_starts`` (actor ticks, no updates) and training (one critic
update per env step, ``policy_frequency`` actor updates every ``policy_frequency`` steps). Compilation is
excluded (every jitted variant runs once before the clock starts). Also the env alone (random actions
through the host adapter) as the ceiling.

    python benchmarks/sac_speed.py                      # HalfCheetah-v4, writes nothing
    python benchmarks/sac_speed.py --out docs/sac_speed.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import jax
import jax.numpy as jnp
import numpy as np

from pipelag.algorithms.sac.buffer import Transition
from pipelag.algorithms.sac.config import SACConfig
from pipelag.algorithms.sac.train import HostDriver


def env_only(driver: HostDriver, steps: int) -> float:
    env = driver.env
    env.reset()
    low, high = driver.spec.low, driver.spec.high
    rng = np.random.default_rng(0)
    t0 = time.perf_counter()
    for _ in range(steps):
        env.step(rng.uniform(low, high, size=(driver.num_seeds, driver.spec.act_dim)).astype(np.float32))
    return steps / (time.perf_counter() - t0)


class _TimedEnv:
    """The driver's env with the wall time spent inside ``step`` counted (to split host from device time)."""

    def __init__(self, env):
        self.env, self.seconds = env, 0.0

    def step(self, actions):
        t0 = time.perf_counter()
        out = self.env.step(actions)
        self.seconds += time.perf_counter() - t0
        return out

    def __getattr__(self, name):
        return getattr(self.env, name)


OVERLAPS = {"off": (False,), "on": (True,), "both": (False, True)}


def pipelag_loop(driver: HostDriver, warm: int, train: int, overlaps=(True,)) -> list[dict[str, float]]:
    """Steps/s of the host driver before and after learning_starts (compile excluded), and the share of
    the training steps' wall time spent in the host env's ``step``; a row per ``overlap`` setting of the
    driver (dispatch beside the env step or not), timed one after the other on the same compiled calls."""
    c = driver.config
    runner = driver.init(jnp.stack([jax.random.PRNGKey(0)] * driver.num_seeds))
    # compile every variant: random steps, then the first train steps (critic only, critic + actor)
    runner, _ = driver.run_steps(runner, c.learning_starts + 2 * c.policy_frequency)
    jax.block_until_ready(runner.sac)
    rows = []
    for overlap in overlaps:
        driver.overlap = overlap
        timed = driver.env = _TimedEnv(driver.env)
        t0 = time.perf_counter()
        runner, _ = driver.run_steps(runner, train)
        jax.block_until_ready(runner.sac)
        t_train = time.perf_counter() - t0
        driver.env = timed.env
        # random-action phase: a fresh runner, time the steps after the first
        fresh = driver.init(jnp.stack([jax.random.PRNGKey(1)] * driver.num_seeds))
        fresh, _ = driver.run_steps(fresh, 10)
        n_warm = min(warm, c.learning_starts - 10)  # stay in the random phase
        t0 = time.perf_counter()
        fresh, _ = driver.run_steps(fresh, n_warm)
        jax.block_until_ready(fresh.buffer.ptr)
        t_warm = time.perf_counter() - t0
        n = driver.num_seeds
        rows.append({"seeds": n, "overlap": overlap, "random_phase_steps_per_s": n_warm / t_warm,
                     "train_steps_per_s": train / t_train, "updates_per_s": train / t_train,
                     "updates_per_s_all_seeds": n * train / t_train,
                     "env_step_share_of_train_time": timed.seconds / t_train,
                     "min_per_1M_steps_all_seeds": 1e6 / (train / t_train) / 60})
    for row in rows:
        row["train_speed_vs_first_overlap_setting"] = row["train_steps_per_s"] / rows[0]["train_steps_per_s"]
    return rows


def host_breakdown(driver: HostDriver, runner, steps: int) -> dict[str, float]:
    """Where a training step's wall time goes on the host (ms per step): waiting for the action, the env's
    step, and ``HostDriver.step`` (putting the env's outputs on the device and dispatching the jitted
    calls). ``run_steps``'s loop without the dispatching thread (overlap off), with clocks."""
    t = int(np.asarray(runner.step)[0])
    env_s = put_s = wait_s = 0.0
    action, state, ahead = runner.action, driver.pack(runner), None
    for _ in range(steps):
        t0 = time.perf_counter()
        actions = np.asarray(action)
        t1 = time.perf_counter()
        next_obs, reward, term, trunc, final_obs, _ = driver.env.step(actions)
        t2 = time.perf_counter()
        out = driver.step(state, t, reward, term, trunc, final_obs, next_obs, ahead)
        state, action, ahead = out.state, out.action, out.ahead
        t3 = time.perf_counter()
        wait_s, env_s, put_s, t = wait_s + t1 - t0, env_s + t2 - t1, put_s + t3 - t2, t + 1
    jax.block_until_ready(state)
    return {"wait_for_action_ms": 1e3 * wait_s / steps, "env_step_ms": 1e3 * env_s / steps,
            "put_and_dispatch_ms": 1e3 * put_s / steps}


def profile_training(driver: HostDriver, steps: int, out_dir: str) -> dict:
    """A trace of ``steps`` training steps (after ``learning_starts``) and the host-side breakdown."""
    from gpu_trace import print_trace_summary

    c = driver.config
    runner = driver.init(jnp.stack([jax.random.PRNGKey(2)] * driver.num_seeds))
    runner, _ = driver.run_steps(runner, c.learning_starts + 2 * c.policy_frequency)
    jax.block_until_ready(runner.sac)
    with jax.profiler.trace(out_dir, create_perfetto_trace=True):
        runner, _ = driver.run_steps(runner, steps)
        jax.block_until_ready(runner.sac)
    s = print_trace_summary(out_dir, steps, f"{driver.num_seeds} seeds, host driver training steps")
    return {"breakdown": host_breakdown(driver, runner, steps),
            **{k: v for k, v in s.items() if k != "top"}, "top": s.get("top", [])[:30]}


class NumpyBuffer:
    """cleanRL-style host replay buffer with the same window semantics as the device one."""

    def __init__(self, capacity: int, example: Transition):
        self.cap = capacity
        self.data = jax.tree.map(lambda x: np.zeros((capacity, *np.shape(x)), np.asarray(x).dtype), example)
        self.ptr = self.size = 0

    def add(self, tr: Transition):
        for d, x in zip(jax.tree.leaves(self.data), jax.tree.leaves(tr), strict=True):
            d[self.ptr] = x
        self.ptr = (self.ptr + 1) % self.cap
        self.size = min(self.size + 1, self.cap)

    def sample(self, rng, batch: int, window: int):
        oldest = self.ptr if self.size == self.cap else 0
        last = (oldest + rng.integers(window - 1, self.size, size=batch)) % self.cap
        idx = (last[:, None] - (window - 1) + np.arange(window)[None]) % self.cap
        starts = self.data.start[idx]
        pos = np.arange(window)[None]
        first = np.max(np.where(starts & (pos > 0), pos, 0), axis=1)
        return jax.tree.map(lambda d: d[idx], self.data), first


def plain_loop(driver: HostDriver, warm: int, train: int) -> dict[str, float]:
    """The same agent in a plain loop: numpy buffer, separate jitted act/update, batch copied per update."""
    agent, c, env = driver.agent, driver.config, driver.env
    net = agent.net
    assert driver.num_seeds == 1

    @jax.jit
    def init(key, obs):
        return agent.init_runner(key, obs)

    acts = {m: jax.jit(lambda p, s, o, k, m=m: agent.policy(p, s, o, k, m)) for m in ("random", "sample")}
    initial_state = jax.jit(net.initial_state)
    updates = {n: jax.jit(lambda st, w, f, k, n=n: agent.learner.update(st, w, f, k, n))
               for n in (0, c.policy_frequency)}

    def go(steps: int, learn_from: int, buf=None, sac=None):
        obs = env.reset()[0]
        r = init(jax.random.PRNGKey(0), jnp.asarray(obs))
        sac = r.sac if sac is None else sac
        if buf is None:
            buf = NumpyBuffer(c.capacity, jax.tree.map(np.asarray, Transition(
                r.obs, r.action, np.float32(0), False, r.obs, False, r.history)))
        state, start, key, rng = r.actor_state, True, jax.random.PRNGKey(1), np.random.default_rng(0)
        t, t0 = 0, None
        for t in range(steps):
            if t == 2 * c.policy_frequency + 1:  # compile excluded
                jax.block_until_ready(sac)
                t0 = time.perf_counter()
            key, k_act, k_upd = jax.random.split(key, 3)
            mode = "sample" if t >= learn_from else "random"
            action, after, hist = acts[mode](sac.actor_params, state, jnp.asarray(obs), k_act)
            a = np.asarray(action)
            next_obs, reward, term, trunc, final_obs, _ = env.step(a[None])
            buf.add(Transition(obs, a, reward[0], term[0], final_obs[0], start,
                               jax.tree.map(np.asarray, hist)))
            done = bool(term[0] or trunc[0])
            obs, start = next_obs[0], done
            state = initial_state(sac.actor_params, jnp.asarray(obs)) if done else after
            if t >= learn_from:
                window, first = buf.sample(rng, c.batch_size, agent.window)
                n = c.policy_frequency if (t - learn_from) % c.policy_frequency == c.policy_frequency - 1 else 0
                sac, _ = updates[n](sac, jax.tree.map(jnp.asarray, window), jnp.asarray(first), k_upd)
        jax.block_until_ready(sac)
        timed = steps - 2 * c.policy_frequency - 1
        return (timed / (time.perf_counter() - t0) if t0 is not None else None), buf, sac

    random_sps, buf, sac = go(min(warm, c.learning_starts), learn_from=10**12)
    # fill the buffer past learning_starts, then time training
    if buf.size < max(c.learning_starts, agent.window):
        _, buf, sac = go(max(c.learning_starts, agent.window) - buf.size, learn_from=10**12, buf=buf, sac=sac)
    train_sps, _, _ = go(train, learn_from=0, buf=buf, sac=sac)
    return {"random_phase_steps_per_s": random_sps, "train_steps_per_s": train_sps, "updates_per_s": train_sps}


def jax_driver_speed(arch: str, steps: int = 500) -> dict[str, float]:
    """The jitted driver on the JAX toy env (PointTarget-v0) with the same network sizes: agent steps/s of
    ``JaxDriver.iterate`` (env step + critic update per step, actor updates every policy_frequency)."""
    from pipelag.algorithms.sac.train import JaxDriver

    cfg = SACConfig(env_id="PointTarget-v0", arch=arch, learning_starts=1000, total_timesteps=10**7,
                    buffer_size=1_000_000, eval_episodes=0).validate()
    d = JaxDriver(cfg)
    it = cfg.policy_frequency
    runner = jax.jit(jax.vmap(d.init))(jax.random.split(jax.random.PRNGKey(0), 1))
    runner, _ = jax.jit(jax.vmap(lambda r: d.warmup(r, cfg.learning_starts)))(runner)
    f = jax.jit(jax.vmap(lambda r: d.iterate(r, steps // it)), donate_argnums=0)
    runner, _ = f(runner)
    jax.block_until_ready(runner.sac)
    t0 = time.perf_counter()
    runner, _ = f(runner)
    jax.block_until_ready(runner.sac)
    sps = (steps // it) * it / (time.perf_counter() - t0)
    return {"train_steps_per_s": sps, "updates_per_s": sps}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--env", default="HalfCheetah-v4")
    p.add_argument("--arch", default="mlp-proj-from-obs")
    p.add_argument("--warm", type=int, default=2000, help="timed random-phase steps (< learning_starts)")
    p.add_argument("--train", type=int, default=500, help="timed training steps")
    p.add_argument("--learning-starts", type=int, default=10_000)
    p.add_argument("--buffer-size", type=int, default=1_000_000)
    p.add_argument("--seeds", type=int, nargs="+", default=[1],
                   help="seeds stepped in lockstep by the host driver (one env each, updates vmapped); the plain "
                        "loop and the env-alone ceiling run with the first")
    p.add_argument("--overlap", choices=sorted(OVERLAPS), default="both",
                   help="the host driver's dispatch beside the env step: off, on, or both (off first, then on)")
    p.add_argument("--no-plain", action="store_true", help="skip the plain host loop and the JAX-driver row")
    p.add_argument("--profile", default=None, help="trace training steps of the last --seeds driver into this "
                   "directory and print the kernels per step and a host-side breakdown")
    p.add_argument("--out", default=None, help="write the numbers as JSON here")
    args = p.parse_args(argv)
    cfg = SACConfig(env_id=args.env, arch=args.arch, learning_starts=args.learning_starts,
                    buffer_size=args.buffer_size, total_timesteps=10**7, eval_episodes=0).validate()
    out = {"env": args.env, "arch": args.arch, "batch_size": cfg.batch_size, "buffer_size": cfg.capacity,
           "cpu_count": os.cpu_count(), "platform": platform.platform(), "jax": jax.__version__,
           "device": str(jax.devices()[0]), "host_driver": []}
    for i, n in enumerate(args.seeds):
        driver = HostDriver(cfg, n, 0)
        try:
            out["window"] = driver.agent.window
            rows = pipelag_loop(driver, args.warm, args.train, OVERLAPS[args.overlap])
            env_sps = env_only(driver, 3000)  # lockstep vector steps/s, all seeds
            for row in rows:
                row["env_only_steps_per_s"] = env_sps
                out["host_driver"].append(row)
                print(json.dumps(row), flush=True)
            if i == 0 and not args.no_plain and n == 1:
                out["plain_host_loop"] = plain_loop(driver, args.warm, args.train)
            if args.profile and i == len(args.seeds) - 1:
                out["profile"] = profile_training(driver, min(args.train, 200), args.profile)
                print(json.dumps(out["profile"]["breakdown"]), flush=True)
        finally:
            driver.close()
    if not args.no_plain:
        out["jax_driver_on_PointTarget"] = jax_driver_speed(args.arch)
    base = out["host_driver"][0]
    for row in out["host_driver"]:
        row["throughput_vs_first"] = row["updates_per_s_all_seeds"] / base["updates_per_s_all_seeds"]
    print(json.dumps(out, indent=2))
    if args.out:
        with open(args.out, "w") as f:
            json.dump(out, f, indent=2)
    return out


if __name__ == "__main__":
    main()
