from __future__ import annotations

import importlib.util
import subprocess
import sys

import pytest

import pipelag.envs
from pipelag.envs import list_envs, make
from pipelag.errors import PipelagError

MINATAR_IDS = [f"MinAtar/{g}-v0" for g in ("Breakout", "Seaquest", "Freeway", "Asterix", "SpaceInvaders")]
MINIGRID_IDS = ["MiniGrid-Empty-Random-5x5-v0", "MiniGrid-DoorKey-5x5-v0"]


def _have(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def test_list_envs_exact():
    from pipelag.envs.mjx import MJX_IDS

    assert sorted(list_envs()) == sorted([*MINATAR_IDS, *MINIGRID_IDS, *MJX_IDS])
    assert pipelag.envs.make is make


@pytest.mark.parametrize("bad", ["MinAtar/Breakout-v1", "CartPole-v1", "minatar/breakout", ""])
def test_unknown_id_lists_valid_ids_and_host_route(bad):
    with pytest.raises(PipelagError) as err:
        make(bad)
    msg = str(err.value)
    for env_id in MINATAR_IDS + MINIGRID_IDS:
        assert env_id in msg
    assert "make_host_env" in msg and "gymnasium" in msg


def test_unknown_id_suggests_close_match():
    with pytest.raises(PipelagError, match="Did you mean 'MinAtar/Breakout-v0'"):
        make("MinAtar/Breakout-v1")


def test_unknown_option_names_valid_options():
    with pytest.raises(PipelagError, match="unknown option 'view'.*sticky_action_prob"):
        make("MinAtar/Breakout-v0", view="rgb")
    with pytest.raises(PipelagError, match="unknown option 'sticky_action_prob'.*view"):
        make("MiniGrid-DoorKey-5x5-v0", sticky_action_prob=0.1)


def test_env_options_lists_what_make_accepts():
    from pipelag.envs.registry import env_options

    assert env_options("MinAtar/Breakout-v0") == ("sticky_action_prob",)
    assert {"ls_iterations", "unroll_line_search", "unroll_substeps"} <= set(env_options("MJX/Hopper-v4"))
    with pytest.raises(PipelagError, match="unknown JAX environment id 'Hopper-v4'"):
        env_options("Hopper-v4")


def test_bad_option_values():
    with pytest.raises(PipelagError, match="sticky_action_prob"):
        make("MinAtar/Freeway-v0", sticky_action_prob=1.5)
    with pytest.raises(PipelagError, match="symbolic"):
        make("MiniGrid-Empty-Random-5x5-v0", view="pixels")


def test_env_modules_imported_lazily():
    code = (
        "import sys, pipelag.envs; "
        "assert 'pipelag.envs.minatar' not in sys.modules and 'pipelag.envs.minigrid' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.skipif(not _have("pipelag.envs.minigrid"), reason="pipelag.envs.minigrid not written yet")
@pytest.mark.parametrize("view, shape", [("symbolic", (7, 7, 3)), ("rgb", (56, 56, 3))])
def test_make_minigrid(view, shape):
    from pipelag.envs.minigrid import MiniGrid

    env = make("MiniGrid-DoorKey-5x5-v0", view=view)
    assert isinstance(env, MiniGrid)
    assert env.env_id == "MiniGrid-DoorKey-5x5-v0"
    assert tuple(env.obs_shape) == shape and env.num_actions == 7
    assert tuple(make("MiniGrid-Empty-Random-5x5-v0").obs_shape) == (56, 56, 3)  # default view


@pytest.mark.skipif(not _have("pipelag.envs.minatar"), reason="pipelag.envs.minatar not written yet")
@pytest.mark.parametrize("env_id", MINATAR_IDS)
def test_make_minatar(env_id):
    from pipelag.envs.minatar import MinAtar

    env = make(env_id, sticky_action_prob=0.25)
    assert isinstance(env, MinAtar) and env.env_id == env_id
    assert env.num_actions == 6 and len(env.obs_shape) == 3 and tuple(env.obs_shape[:2]) == (10, 10)
    assert env.sticky_action_prob == 0.25
    assert make(env_id).sticky_action_prob == 0.1
