"""On a GPU, `pipelag train --deterministic` gives the same numbers run after run (run with -m gpu)."""

import json
import subprocess
import sys

import pytest

pytestmark = pytest.mark.gpu


def _train(out, deterministic: bool) -> list[dict]:
    cmd = [sys.executable, "-m", "pipelag.cli", "train", "--algo", "ppo", "--env", "MinAtar/Breakout-v0",
           "--arch", "cnn-skip-res", "--action-history", "1", "--seeds", "2", "--total-steps", "262144",
           "--eval-episodes", "8", "--set", "compute_dtype=bfloat16", "--quiet", "--out", str(out)]
    subprocess.run(cmd + (["--deterministic"] if deterministic else []), check=True, timeout=600)
    rows = [json.loads(line) for line in open(out / "metrics.jsonl")]
    results = json.load(open(out / "results.json"))
    return [{k: v for k, v in r.items() if k != "steps_per_s"} for r in rows] + [
        {k: results[k] for k in ("eval_sampled", "eval_greedy")}]


def test_deterministic_training_repeats_exactly_on_a_gpu(tmp_path):
    import jax

    if jax.default_backend() not in ("gpu", "cuda", "rocm"):
        pytest.skip("needs a GPU")
    first = _train(tmp_path / "a", deterministic=True)
    second = _train(tmp_path / "b", deterministic=True)
    assert first == second
