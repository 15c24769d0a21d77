import pytest

from pipelag.cli import main
from pipelag.networks import list_architectures


def test_archs_lists_every_architecture(capsys):
    assert main(["archs"]) == 0
    out = capsys.readouterr().out
    assert all(a in out for a in list_architectures())


def test_profile_prints_the_delay_table(capsys):
    assert main(["profile", "cnn", "--delta", "0.4"]) == 0
    out = capsys.readouterr().out
    # the 5-layer CNN at 2.5 layers per tick acts on o_(t-2) through all 5 layers
    assert any(line.split() == ["2", "2", "5", "5"] for line in out.splitlines())


@pytest.mark.parametrize("argv, message", [
    (["profile", "resnet"], "unknown architecture"),
    (["profile", "cnn", "--delta", "-1"], "must be > 0"),
    (["profile", "mlp", "--obs-shape", "10,10,3"], "flat observation vector"),
])
def test_errors_are_one_line_without_traceback(capsys, argv, message):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("algo, env, arch", [("ppo", "MinAtar/Breakout-v0", "cnn-skip"),
                                             ("sac", None, None)])
def test_train_dispatches_with_each_algorithms_defaults(monkeypatch, algo, env, arch):
    import pipelag.algorithms.ppo.cli as ppo_cli
    import pipelag.algorithms.sac.cli as sac_cli

    seen = {}
    for mod in (ppo_cli, sac_cli):
        monkeypatch.setattr(mod, "run_train", lambda args, m=mod: seen.update(module=m, args=args) or 0)
    assert main(["train", "--algo", algo, "--seeds", "2"]) == 0
    assert seen["module"] is (ppo_cli if algo == "ppo" else sac_cli)
    # SAC must not inherit PPO's MinAtar/CNN defaults (it fills HalfCheetah / mlp-proj-from-obs itself)
    assert (seen["args"].env, seen["args"].arch, seen["args"].seeds) == (env, arch, 2)


def test_train_rejects_an_arch_that_does_not_fit_the_env(capsys):
    assert main(["train", "--algo", "ppo", "--arch", "mlp", "--total-steps", "2048", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "flat observation vector" in err and "Traceback" not in err


def test_ppo_train_prefers_cublas_gemms_unless_the_user_chose(monkeypatch, capsys):
    """`pipelag train --algo ppo` adds the measured GPU flag to XLA_FLAGS before JAX starts (XLA reads it
    then), keeps the user's other flags, and leaves a value the user gave for it alone."""
    from pipelag.runtime.xla_flags import add_default_xla_flags

    env = {"XLA_FLAGS": "--xla_dump_to=/tmp/x"}
    assert add_default_xla_flags(environ=env) == ["--xla_gpu_enable_triton_gemm=false"]
    assert env["XLA_FLAGS"] == "--xla_dump_to=/tmp/x --xla_gpu_enable_triton_gemm=false"
    mine = {"XLA_FLAGS": "--xla_gpu_enable_triton_gemm=true"}
    assert add_default_xla_flags(environ=mine) == [] and mine["XLA_FLAGS"] == "--xla_gpu_enable_triton_gemm=true"
    assert add_default_xla_flags(environ={}) == ["--xla_gpu_enable_triton_gemm=false"]

    monkeypatch.setenv("XLA_FLAGS", "")  # (restored after the test) the CLI sets it; an arch error exits early
    assert main(["train", "--algo", "ppo", "--arch", "mlp", "--total-steps", "2048", "--quiet"]) == 2
    import os

    assert "--xla_gpu_enable_triton_gemm=false" in os.environ["XLA_FLAGS"]


def test_train_deterministic_adds_xla_s_deterministic_ops_flag_only_when_asked(monkeypatch):
    """`pipelag train --deterministic` asks XLA for deterministic GPU kernels before JAX starts its backend;
    without the flag the kernels stay the fast, run-to-run varying ones. The run records XLA_FLAGS."""
    import os

    from pipelag.algorithms.common.rundir import versions

    monkeypatch.setenv("XLA_FLAGS", "")
    assert main(["train", "--algo", "ppo", "--arch", "mlp", "--total-steps", "2048", "--quiet"]) == 2
    assert "xla_gpu_deterministic_ops" not in os.environ["XLA_FLAGS"]
    assert main(["train", "--deterministic", "--algo", "ppo", "--arch", "mlp", "--total-steps", "2048",
                 "--quiet"]) == 2
    assert "--xla_gpu_deterministic_ops=true" in os.environ["XLA_FLAGS"].split()
    assert versions()["xla_flags"] == os.environ["XLA_FLAGS"]
