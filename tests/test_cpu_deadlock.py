"""Regression test: PPO's pure training vmapped over 2 seeds used to hang forever on a 2-core CPU
(XLA's concurrency-optimized CPU scheduler; pipelag turns it off on import). Run in a subprocess with a
timeout, so that a hang fails the test instead of blocking the suite."""

import os
import subprocess
import sys

import pytest

SCRIPT = """
import jax, jax.numpy as jnp
{pre}
from pipelag.algorithms.ppo import PPOConfig, make_train
cfg = PPOConfig(env_id="MinAtar/Breakout-v0", arch="cnn", channels=(4, 4, 4), hidden=16, critic_channels=(4, 4, 4),
                critic_hidden=16, num_envs=4, num_steps=8, total_timesteps=4 * 8 * 4, eval_episodes=2,
                eval_max_steps=20)
keys = jnp.stack([jax.random.PRNGKey(s) for s in range(2)])
out = jax.jit(jax.vmap(make_train(cfg)))(keys)
print("finished", jax.block_until_ready(out["eval"]["sampled"]["returns"]).shape)
"""


def _run(pre: str = "", flags: str | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    if flags is not None:
        env["XLA_FLAGS"] = flags
    env["JAX_PLATFORMS"] = "cpu"
    return subprocess.run([sys.executable, "-c", SCRIPT.format(pre=pre)], env=env, capture_output=True, text=True,
                          timeout=150)


def test_two_seeds_of_the_pure_ppo_train_finish_on_cpu():
    p = _run()
    assert p.returncode == 0 and "finished (2, 2)" in p.stdout, p.stderr[-2000:]


def test_the_flag_is_set_on_import_and_a_users_choice_is_kept():
    import pipelag

    assert "xla_cpu_enable_concurrency_optimized_scheduler" in os.environ["XLA_FLAGS"]
    code = "import os, pipelag; print(os.environ['XLA_FLAGS'])"
    env = {**os.environ, "XLA_FLAGS": "--xla_cpu_enable_concurrency_optimized_scheduler=true"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60).stdout
    assert out.split() == ["--xla_cpu_enable_concurrency_optimized_scheduler=true"]
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60).stdout
    assert out.split() == [pipelag.CPU_DEADLOCK_FLAG]


MINATAR_SIZE = """
import jax
from pipelag.algorithms.ppo import PPOConfig, train_seeds
cfg = PPOConfig(env_id="MinAtar/Breakout-v0", arch="cnn-skip-res", action_history=1, channels=(8, 16, 16), hidden=64,
                total_timesteps=1024 * 3, eval_episodes=0)
out = train_seeds(cfg, [0, 1])
print("finished", jax.block_until_ready(out["metrics"]["loss"]).shape)
"""


def test_two_seeds_at_minatar_size_finish_on_cpu():
    """At the default 32 envs × 32 steps and `make run`'s network size, the vmapped 2-seed program hung
    even with the flag (session 4); on a CPU the seeds now run one after another (``over_seeds``)."""
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    p = subprocess.run([sys.executable, "-c", MINATAR_SIZE], env={**env, "JAX_PLATFORMS": "cpu"},
                       capture_output=True, text=True, timeout=150)
    assert p.returncode == 0 and "finished (2, 3)" in p.stdout, p.stderr[-2000:]


def test_over_seeds_maps_every_argument_and_stacks_the_results():
    import jax
    import jax.numpy as jnp
    import numpy as np

    from pipelag.algorithms.common.seeds import over_seeds

    def f(key, x):
        return {"y": x * jax.random.uniform(key), "n": jnp.sum(x)}

    keys, xs = jax.random.split(jax.random.PRNGKey(0), 3), jnp.arange(6.0).reshape(3, 2)
    got, want = jax.jit(over_seeds(f))(keys, xs), jax.vmap(f)(keys, xs)
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6)


@pytest.mark.slow
def test_without_the_workaround_the_same_program_hangs():
    """Documents the XLA bug (slow: waits for the timeout). If this starts passing, XLA fixed it."""
    with pytest.raises(subprocess.TimeoutExpired):
        _run(flags="--xla_cpu_enable_concurrency_optimized_scheduler=true")


SAC_EIGHT_SEEDS = """
import jax, jax.numpy as jnp
from pipelag.algorithms.sac.config import SACConfig
from pipelag.algorithms.sac.train import HostDriver
cfg = SACConfig(env_id="HalfCheetah-v4", learning_starts=4, buffer_size=1000, total_timesteps=10**6, eval_episodes=0)
d = HostDriver(cfg, 8, 0)
r = d.init(jnp.stack([jax.random.PRNGKey(0)] * 8))
r, info = d.run_steps(r, 6)
print("finished", jax.block_until_ready(r.sac.actor_params)["head"]["kernel"].shape[0], info["updates"])
"""


def test_eight_seeds_of_the_paper_size_sac_host_driver_start_and_train_on_cpu():
    """The vmapped init of 8 paper-size HalfCheetah runners hung in XLA's CPU runtime (session 7); the init
    now runs seed by seed on a CPU (``over_seeds``), the steps stay vmapped."""
    pytest.importorskip("mujoco")
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    p = subprocess.run([sys.executable, "-c", SAC_EIGHT_SEEDS], env={**env, "JAX_PLATFORMS": "cpu"},
                       capture_output=True, text=True, timeout=150)
    assert p.returncode == 0 and "finished 8 2" in p.stdout, p.stderr[-2000:]
