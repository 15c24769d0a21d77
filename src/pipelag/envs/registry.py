"""Names of the JAX-native environments: ``pipelag.envs.make(env_id, **options)``.

=============================  =========================  ===========================================
id                             class                      options
=============================  =========================  ===========================================
``MinAtar/<Game>-v0``          ``envs.minatar.MinAtar``   ``sticky_action_prob`` (default 0.1)
``MiniGrid-<Name>-v0``         ``envs.minigrid.MiniGrid`` ``view``: ``"rgb"`` (56×56×3, default) or
                                                          ``"symbolic"`` (7×7×3)
``MJX/<Task>-v4`` (Task:       ``envs.mjx.MjxMujoco``     ``speedup`` (default 1; divides the physics
HalfCheetah, Hopper,                                      timestep), ``max_episode_steps`` (1000);
Walker2d, Ant)                                            ``solver_iterations``, ``ls_iterations``
                                                          (default None: the model's; opt-in caps of
                                                          MJX's solver); ``unroll_line_search``,
                                                          ``unroll_solver`` (False; with caps ≤ 16
                                                          and ≤ 8: loops traced unrolled);
                                                          ``unroll_substeps`` (False: the physics
                                                          steps of an env step without a loop);
                                                          needs ``pip install 'pipelag[mjx]'``
=============================  =========================  ===========================================

Env modules are imported lazily (only the one ``make`` builds). Any other environment (MuJoCo, Atari,
any gymnasium id or factory) runs on the host through :func:`pipelag.envs.host.make_host_env`.
"""

from __future__ import annotations

import difflib
import importlib
from typing import Any, NamedTuple

from pipelag.errors import PipelagError


class _Entry(NamedTuple):
    module: str
    cls: str
    args: tuple[Any, ...]
    options: tuple[str, ...]


_MINATAR_GAMES = {
    "Breakout": "breakout",
    "Seaquest": "seaquest",
    "Freeway": "freeway",
    "Asterix": "asterix",
    "SpaceInvaders": "space_invaders",
}
_MINIGRID_IDS = ("MiniGrid-Empty-Random-5x5-v0", "MiniGrid-DoorKey-5x5-v0")
_MJX_TASKS = ("HalfCheetah", "Hopper", "Walker2d", "Ant")  # = envs.mjx.MJX_IDS (that module imports jax)

_REGISTRY: dict[str, _Entry] = {
    **{
        f"MinAtar/{name}-v0": _Entry("pipelag.envs.minatar", "MinAtar", (game,), ("sticky_action_prob",))
        for name, game in _MINATAR_GAMES.items()
    },
    **{env_id: _Entry("pipelag.envs.minigrid", "MiniGrid", (env_id,), ("view",)) for env_id in _MINIGRID_IDS},
    **{
        f"MJX/{task}-v4": _Entry("pipelag.envs.mjx", "MjxMujoco", (f"{task}-v4",),
                                 ("speedup", "max_episode_steps", "solver_iterations", "ls_iterations",
                                  "unroll_line_search", "unroll_solver", "unroll_substeps"))
        for task in _MJX_TASKS
    },
}

_HOST_HINT = (
    "To use any other (gymnasium) environment, run it on the host instead: "
    "pipelag.envs.host.make_host_env('<gymnasium id or factory>', num_envs, seed, delta=...)."
)


def list_envs() -> list[str]:
    """The ids :func:`make` accepts."""
    return list(_REGISTRY)


def env_options(env_id: str) -> tuple[str, ...]:
    """The option names :func:`make` accepts for ``env_id`` (a registered id)."""
    if env_id not in _REGISTRY:
        raise PipelagError(f"unknown JAX environment id {env_id!r}; valid ids: {', '.join(_REGISTRY)}")
    return _REGISTRY[env_id].options


def make(env_id: str, **options: Any):
    """Build the JAX environment ``env_id`` (see :func:`list_envs`) with its ``options``."""
    entry = _REGISTRY.get(env_id)
    if entry is None:
        close = difflib.get_close_matches(str(env_id), list(_REGISTRY), n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise PipelagError(
            f"unknown JAX environment id {env_id!r}.{hint} Valid ids: {', '.join(_REGISTRY)}. {_HOST_HINT}"
        )
    for name in options:  # values are checked by the environment class itself
        if name not in entry.options:
            raise PipelagError(
                f"unknown option {name!r} for {env_id}; valid options: {', '.join(entry.options)}."
            )
    cls = getattr(importlib.import_module(entry.module), entry.cls)
    return cls(*entry.args, **options)
