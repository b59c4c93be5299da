"""``make("suite/task")`` for every suite; heavy suites are imported only when one is made."""
from __future__ import annotations

import dataclasses
from typing import Any

from rl.envs.base import Env, check_choice, check_positive_int

SUITES = ("dmc", "atari", "adroit", "toy")


def list_envs(suite: str | None = None) -> list[str]:
    """Every env name ``make`` accepts, without importing any simulator.

    Atari lists the 26 Atari-100k games; any other game the installed ale-py knows is accepted
    too (``rl.envs.atari.available_games()``).
    """
    from rl.envs import adroit, atari, dmc, toy

    names = {
        "dmc": [f"dmc/{t}" for t in dmc.task_names()],
        "atari": [f"atari/{g}" for g in atari.ATARI_100K_GAMES],
        "adroit": [f"adroit/{t}" for t in sorted(adroit.ADROIT_TASKS)],
        "toy": [f"toy/{t}" for t in toy.TOY_TASKS],
    }
    if suite is not None:
        if suite not in names:
            raise ValueError(f"unknown suite {suite!r}; valid suites: {list(SUITES)}")
        return names[suite]
    return [name for s in SUITES for name in names[s]]


def _split(name: str) -> tuple[str, str]:
    if not isinstance(name, str) or "/" not in name:
        raise ValueError(f"env name {name!r} must look like '<suite>/<task>' with suite one of "
                         f"{list(SUITES)}, e.g. 'dmc/cheetah_run', 'atari/Pong', 'adroit/door', "
                         f"'toy/reach'")
    suite, task = name.split("/", 1)
    if suite not in SUITES:
        raise ValueError(f"unknown suite {suite!r} in env name {name!r}; valid suites: "
                         f"{list(SUITES)}")
    return suite, task


def make(name: str, *, size: int | None = None, action_repeat: int | None = None,
         convention: str | None = None, **suite_kwargs: Any) -> Env:
    """One environment by name.

    - ``size``: image side; ``None`` picks the suite's default (dmc: 84 for the ``drqv2``
      convention, 64 for ``planet`` and ``dreamer``; atari: 84 grayscale for ``spr``, 64 RGB for ``storm``;
      adroit 84; toy 32).
    - ``action_repeat``: ``None`` uses the convention (dmc: per-task table; atari: frame skip 4;
      adroit 2; toy 1).
    - ``convention``: dmc ``"drqv2"`` (default), ``"planet"`` (per-task repeat) or ``"dreamer"``
      (repeat 2 everywhere, 64x64); atari ``"spr"`` (default, the
      DER/SPR Atari-100k protocol) or ``"storm"``; not used by adroit and toy.
    - ``suite_kwargs`` go to the suite's constructor (atari: ``AtariConfig`` fields, e.g.
      ``terminal_on_life_loss=False`` for an eval env; dmc: ``camera``, ``episode_frames``;
      adroit: ``camera``, ``render_quality``, ``reward_type``; toy: ``episode_frames``, ``speed``).
    """
    suite, task = _split(name)
    if suite == "dmc":
        from rl.envs.dmc import DMCEnv, resolve_task

        resolve_task(task)  # a clear error before importing dm_control
        return DMCEnv(task, size=size, action_repeat=action_repeat,
                      convention=convention or "drqv2", **suite_kwargs)
    if suite == "atari":
        from rl.envs.atari import AtariConfig, AtariEnv

        fields = dict(suite_kwargs)
        if size is not None:
            fields["size"] = size
        if action_repeat is not None:
            fields["frame_skip"] = action_repeat
        return AtariEnv(task, AtariConfig.for_convention(convention or "spr", **fields))
    if convention is not None:
        raise ValueError(f"convention={convention!r} is not used by the {suite!r} suite; "
                         f"leave it None")
    if suite == "adroit":
        from rl.envs.adroit import AdroitEnv

        return AdroitEnv(task, size=size or 84,
                         action_repeat=ACTION_REPEAT[suite] if action_repeat is None
                         else action_repeat, **suite_kwargs)
    from rl.envs.toy import ToyReachEnv

    return ToyReachEnv(task, size=size or 32,
                       action_repeat=ACTION_REPEAT[suite] if action_repeat is None
                       else action_repeat, **suite_kwargs)


ACTION_REPEAT = {"adroit": 2, "toy": 1}   # dmc and atari: per convention (and task)


def action_repeat(name: str, action_repeat: int | None = None, convention: str | None = None,
                  **suite_kwargs: Any) -> int:
    """The action repeat ``make`` gives the env (the same arguments), without making it or
    importing a simulator."""
    if action_repeat is not None:
        return action_repeat
    suite, task = _split(name)
    if suite == "dmc":
        from rl.envs.dmc import default_action_repeat, resolve_task

        return default_action_repeat(*resolve_task(task), convention or "drqv2")
    if suite == "atari":
        from rl.envs.atari import AtariConfig

        return AtariConfig.for_convention(convention or "spr", **suite_kwargs).frame_skip
    return ACTION_REPEAT[suite]


@dataclasses.dataclass(frozen=True)
class EnvDescription:
    """What the agents' configs check against, known without making the env: the pixel shape
    ``(H, W, C)`` and whether actions are discrete."""

    name: str
    obs_shape: tuple[int, int, int]
    discrete: bool


def describe(name: str, *, size: int | None = None, action_repeat: int | None = None,
             convention: str | None = None, **suite_kwargs: Any) -> EnvDescription:
    """The env ``make`` would give (the same arguments), described without importing a
    simulator; a ``ValueError`` naming the bad value (and what is allowed) where ``make`` would
    refuse it. Rendering suites (dmc, adroit) also check the ``MUJOCO_GL`` backend's library."""
    suite, task = _split(name)
    if action_repeat is not None:
        check_positive_int("env.action_repeat", action_repeat)
    if suite == "atari":
        from rl.envs import atari

        if task not in atari.ATARI_100K_GAMES:
            try:
                games = atari.available_games()
            except ImportError:
                games = []
            if task not in games:
                raise ValueError(f"unknown Atari game {task!r} in env.name={name!r}; the "
                                 f"Atari-100k games: {list(atari.ATARI_100K_GAMES)}"
                                 + ("" if games else " (ale-py is not installed)"))
        fields = dict(suite_kwargs)
        if size is not None:
            fields["size"] = size
        if action_repeat is not None:
            fields["frame_skip"] = action_repeat
        try:
            cfg = atari.AtariConfig.for_convention(convention or "spr", **fields)
        except ValueError as error:
            raise ValueError(f"env={name}: {error}") from None
        return EnvDescription(name, (cfg.size, cfg.size, 1 if cfg.grayscale else 3), True)
    if suite == "dmc":
        from rl.envs import dmc

        dmc.resolve_task(task)
        convention = convention or "drqv2"
        check_choice("env.convention", convention, dmc.CONVENTIONS)
        size = dmc.DEFAULT_SIZE[convention] if size is None else size
        check_choice("env.size", size, dmc.SIZES)
        description = EnvDescription(name, (size, size, 3), False)
    else:
        if convention is not None:
            raise ValueError(f"env.convention={convention!r} is not used by the {suite!r} "
                             f"suite; leave it null (conventions: dmc drqv2|planet|dreamer, atari "
                             f"spr|storm)")
        if suite == "adroit":
            from rl.envs import adroit

            check_choice("adroit task", task, sorted(adroit.ADROIT_TASKS))
            size = 84 if size is None else check_positive_int("env.size", size)
            description = EnvDescription(name, (size, size, 3), False)
        else:
            from rl.envs import toy

            check_choice("toy task", task, toy.TOY_TASKS)
            size = 32 if size is None else check_positive_int("env.size", size)
            if size < 8:
                raise ValueError(f"env.size={size}; toy envs need at least 8 pixels")
            return EnvDescription(name, (size, size, 3), task == "reach_discrete")
    from rl.envs.mujoco_render import check_gl_backend

    check_gl_backend(f"env={name}")
    return description


def eval_overrides(name: str) -> dict[str, Any]:
    """Constructor options that turn a training env into its evaluation-protocol twin."""
    suite, _ = _split(name)
    if suite == "atari":
        return {"terminal_on_life_loss": False}  # life loss ends training episodes only
    return {}
