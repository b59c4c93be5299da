"""RePo's test-time alignment: adapt a trained world-model agent's encoder to a shifted env.

    python -m experiments.align run=<run dir of experiments.train>   # defaults: conf/align.yaml
    python -m experiments.align run=<run dir> target_env_kwargs.appearance_shift=none  # bg only
    python -m experiments.align run=<run dir> alignment.features=posterior alignment.pair_coef=0

Reward-free (RePo, Zhu et al. 2024, official ``CalibratedRePo``; losses in
``rl/agents/alignment.py``). In order:
1. load the run: its saved ``config.yaml`` and latest (or ``checkpoint_step``) checkpoint, which
   holds the agent state and the replay of its training env (the SOURCE domain's data);
2. evaluate the agent as trained in the TARGET env (the run's env kwargs updated with
   ``target_env_kwargs``, default: the test distractor pool and recoloured robot) and, with
   ``eval_source``, in the source env: "before";
3. ``pair_frames`` of paired frames: the same simulator state rendered in both domains (two
   copies of the task stepped in lockstep from the same seeds and actions, ``PairedEnv``),
   driven by the frozen source policy on the source frames (``pair_policy=source``, as the
   official expert calibration data) or by random actions; their target halves also go to the
   target replay;
4. ``frames`` of target-env steps acted by the frozen policy through the encoder being adapted
   (no reward used), interleaved with ``updates_per_call`` alignment updates every
   ``update_every_frames`` (one jit each; only the encoder, the critic and the density ratio
   move; the RSSM, reward head, actor and critic are the checkpoint's);
5. evaluate again ("after"); write ``align.json`` (before/after), ``metrics.jsonl``, the config,
   and (``save_checkpoint``) the adapted agent state to ``checkpoints/`` in ``out_dir``.

Default ``out_dir``: ``<run>/align/<date>_<time>``. The official schedule (50k target steps,
100 updates every 500, 5000 paired steps, batch 50 x 50) at action repeat 2 is the default.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import pathlib
import sys
import time
from typing import Any, Callable, Dict, Optional

import hydra
import numpy as np
from omegaconf import DictConfig, OmegaConf

from experiments import config as config_lib
from experiments import runs
from experiments.runs import LoadedRun, objective_names
from rl.agents.alignment import AlignmentConfig

SOURCE_DATA = ("replay", "collect")
PAIR_POLICIES = ("source", "random")


@dataclasses.dataclass(frozen=True)
class AlignRunConfig:
    run: str = ""                           # run directory of experiments.train (required)
    checkpoint_step: Optional[int] = None   # None: the latest checkpoint
    seed_index: int = 0                     # which copy of a num_seeds > 1 run
    seed: int = 1
    device: str = "auto"                    # auto | cpu | gpu
    out_dir: str = ""                       # "" : <run>/align/<date>_<time>
    # the target env: the run's env kwargs updated with these (a null value passes None; to
    # replace the whole dict: '~target_env_kwargs' '+target_env_kwargs={...}')
    target_env_kwargs: Dict[str, Any] = dataclasses.field(
        default_factory=lambda: {"distractor": "test", "appearance_shift": "color"})
    num_envs: int = 1                       # collection envs (target and paired)
    parallel: bool = False                  # one subprocess per env (all vector envs)
    frames: int = 100_000                   # online target-env frames (official 50k steps x 2)
    pair_frames: int = 10_000               # paired frames (official 5000 steps); 0: none
    pair_policy: str = "source"             # source: frozen policy on source frames | random
    source_data: str = "replay"             # replay: the checkpoint's | collect: fresh, source env
    source_frames: int = 20_000             # frames to collect with source_data=collect
    update_every_frames: int = 1_000        # official train_every 500 steps
    updates_per_call: int = 100             # official train_steps
    fuse_updates: bool = False              # K updates in one lax.scan, else K dispatches
    explore: bool = True                    # online collection samples the actor (official)
    eval_every_frames: int = 10_000         # 0: only before and after
    eval_episodes: int = 10
    eval_envs: int = 10
    eval_source: bool = True                # also evaluate in the source env (before and after)
    log_every_frames: int = 1_000
    save_checkpoint: bool = True
    wandb_mode: str = "disabled"            # offline | online | disabled
    progress: bool = True
    alignment: AlignmentConfig = dataclasses.field(default_factory=AlignmentConfig)

    def __post_init__(self) -> None:
        if not self.run:
            raise ValueError("run is required: the directory of a run of experiments.train "
                             "(with config.yaml and checkpoints/)")
        if self.device not in ("auto", "cpu", "gpu"):
            raise ValueError(f"device={self.device!r}; allowed: auto, cpu, gpu")
        if self.source_data not in SOURCE_DATA:
            raise ValueError(f"source_data={self.source_data!r}; valid: {list(SOURCE_DATA)}")
        if self.pair_policy not in PAIR_POLICIES:
            raise ValueError(f"pair_policy={self.pair_policy!r}; valid: {list(PAIR_POLICIES)}")
        if self.wandb_mode not in ("offline", "online", "disabled"):
            raise ValueError(f"wandb_mode={self.wandb_mode!r}; valid: offline, online, disabled")
        for name in ("num_envs", "frames", "update_every_frames", "updates_per_call",
                     "eval_episodes", "eval_envs", "log_every_frames", "source_frames"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}={value!r}; must be an int >= 1")
        for name in ("pair_frames", "eval_every_frames", "seed_index", "seed"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name}={value!r}; must be an int >= 0")
        if self.checkpoint_step is not None and self.checkpoint_step < 0:
            raise ValueError(f"checkpoint_step={self.checkpoint_step!r}; must be >= 0 or null")

    @property
    def eval_seed(self) -> int:
        """The eval envs' seed (the collection envs take ``seed`` and above)."""
        return self.seed + config_lib.EVAL_SEED_OFFSET


def register() -> None:
    """The train schemas (env/agent configs) and ``align_schema`` for conf/align.yaml."""
    config_lib.register()
    from hydra.core.config_store import ConfigStore

    ConfigStore.instance().store(name="align_schema", node=config_lib.mirror(AlignRunConfig))


register()


# ---- the paired env ---------------------------------------------------------------------------
class PairedEnv:
    """One simulator state rendered in two domains: two copies of a task (source and target
    kwargs) reset with the same seeds and stepped with the same actions. ``obs`` is ``[H, W,
    2C]``: source channels, then target channels. Rewards, ends and (for DMC) physics states are
    checked to agree at every step; a mismatch is an error, not silently unpaired data."""

    def __init__(self, make_source: Callable[[], Any], make_target: Callable[[], Any]):
        self.source, self.target = make_source(), make_target()
        s, t = self.source.spec, self.target.spec
        if (s.obs_shape, s.action, s.action_repeat) != (t.obs_shape, t.action, t.action_repeat):
            raise ValueError(f"paired envs differ: source {s} vs target {t}")
        h, w, c = s.obs_shape
        self.spec = dataclasses.replace(s, name=f"{s.name}[paired]", obs_shape=(h, w, 2 * c))
        target_keys = tuple(getattr(self.target, "info_keys", ()))
        self.info_keys = tuple(k for k in getattr(self.source, "info_keys", ())
                               if k in target_keys)

    def _check(self, what: str, a: Any, b: Any) -> None:
        same = a == b
        physics = getattr(self.source, "physics", None)
        if same and physics is not None:
            same = np.array_equal(physics.get_state(), self.target.physics.get_state())
        if not same:
            raise RuntimeError(f"PairedEnv: the source and target copies diverged after {what} "
                               f"({a} vs {b}); their simulators must be deterministic")

    def reset(self, seed: int):
        a, info = self.source.reset(seed)
        b, _ = self.target.reset(seed)
        self._check(f"reset({seed})", 0, 0)
        return np.concatenate([a, b], -1), info

    def step(self, action: Any):
        a, reward, terminated, truncated, info = self.source.step(action)
        b, reward_b, terminated_b, truncated_b, _ = self.target.step(action)
        self._check("a step", (reward, terminated, truncated),
                    (reward_b, terminated_b, truncated_b))
        return np.concatenate([a, b], -1), reward, terminated, truncated, info

    def close(self) -> None:
        self.source.close()
        self.target.close()


# ---- loading a run ----------------------------------------------------------------------------
def env_factory(cfg: config_lib.RunConfig, **kwargs: Any) -> Callable[[], Any]:
    """A picklable maker of the run's env with its kwargs updated by ``kwargs``."""
    return cfg.env.maker(**kwargs)


def load_run(run: str | pathlib.Path, step: int | None = None, seed_index: int = 0,
             print_fn: Callable[[str], None] = print) -> LoadedRun:
    """The agent and replay of a run of ``experiments.train`` (``experiments.runs.load_run``),
    refused unless it trained a world model (the imagination agent)."""
    saved = config_lib.saved_config(run, f"run={str(run)!r}")
    if saved.agent.name != "imagination":
        raise ValueError(f"run={str(run)!r} trained agent.name={saved.agent.name!r}; alignment "
                         "re-trains a world model's encoder: it needs agent=imagination")
    return runs.load_run(run, step, seed_index, print_fn)


# ---- acting -----------------------------------------------------------------------------------
class Collector:
    """Steps a ``VectorEnv`` with the agent's jitted ``act`` (or random actions) and writes
    each step into replays; keeps the last time step and the acting carry between calls."""

    def __init__(self, agent: Any, act: Callable, env: Any):
        self.agent, self.act, self.env = agent, act, env
        self.ts = None
        self.carry = agent.initial_carry(env.num_envs)
        self.returns: list[float] = []

    def reset(self):
        """The first time step, and the (zero) action stored with it."""
        spec = self.env.spec.action
        self.ts = self.env.reset()
        return self.ts, np.zeros((self.env.num_envs, *spec.shape), spec.dtype)

    def step(self, state: Any, key: Any, explore: bool, view: Callable = lambda o: o,
             random: bool = False):
        """One step; ``view`` picks what the policy sees from the obs (e.g. the source half of
        paired frames). Returns ``(time step, action that led to it)``; resets first if needed."""
        import jax
        import jax.numpy as jnp

        from rl.loop import random_actions

        spec = self.env.spec.action
        if self.ts is None:
            return self.reset()
        act_key, random_key = jax.random.split(key)
        action, self.carry = self.act(state, self.carry, jnp.asarray(view(self.ts.obs)),
                                      jnp.asarray(self.ts.is_first), act_key, jnp.int32(0),
                                      explore=explore)
        if random:
            action = random_actions(random_key, spec, self.env.num_envs)
        action = np.asarray(action).astype(spec.dtype)
        self.ts = self.env.step(action)
        self.returns += [float(r) for r in self.ts.info["episode_return"][self.ts.is_last]]
        return self.ts, action


def with_encoder(agent_state: Any, encoder: Any) -> Any:
    """The agent state acting through ``encoder`` (everything else as trained)."""
    world_model = {**agent_state.nets["world_model"], "encoder": encoder}
    return agent_state.replace(nets={**agent_state.nets, "world_model": world_model})


# ---- the pipeline -----------------------------------------------------------------------------
def to_config(cfg: DictConfig | AlignRunConfig) -> AlignRunConfig:
    if isinstance(cfg, AlignRunConfig):
        return cfg
    return config_lib._from_node(AlignRunConfig, cfg)


def collect_source(agent: Any, act: Callable, state: Any, env: Any, steps: int, key: Any,
                   explore: bool) -> Any:
    """A fresh replay of ``steps`` steps per env of ``state``'s policy in ``env`` (the source
    domain), for ``source_data=collect``."""
    import jax

    from rl import replay as replay_lib

    replay = replay_lib.init(env.spec, steps * env.num_envs, env.num_envs)
    collector = Collector(agent, act, env)
    replay = replay_lib.add_timestep(replay, *collector.reset())
    for step_key in jax.random.split(key, steps - 1):
        replay = replay_lib.add_timestep(replay, *collector.step(state, step_key, explore))
    return replay


def collect_pairs(agent: Any, act: Callable, state: Any, env: Any, steps: int, key: Any,
                  random: bool, target: Any) -> tuple[Any, Any, list[float]]:
    """``steps`` steps per env of a ``PairedEnv`` vector env, acted (deterministically) by
    ``state``'s policy on the source halves, or at random. Returns the paired replay, ``target``
    with the target halves added, and the finished episodes' returns."""
    import jax

    from rl import replay as replay_lib

    channels = env.spec.obs_shape[-1] // 2
    pair = replay_lib.init(env.spec, steps * env.num_envs, env.num_envs)
    collector = Collector(agent, act, env)

    def add(pair, target, ts, action):
        target = replay_lib.add_timestep(target, ts._replace(obs=ts.obs[..., channels:]), action)
        return replay_lib.add_timestep(pair, ts, action), target

    pair, target = add(pair, target, *collector.reset())
    for step_key in jax.random.split(key, steps - 1):
        ts, action = collector.step(state, step_key, False, view=lambda o: o[..., :channels],
                                    random=random)
        pair, target = add(pair, target, ts, action)
    return pair, target, collector.returns


def env_makers(cfg: AlignRunConfig, run: LoadedRun, make_source: Callable | None,
               make_target: Callable | None) -> tuple[Callable, Callable, dict, Any]:
    """Source and target env makers, the source kwargs and the target's (or "custom")."""
    source_kwargs = dict(run.cfg.env.kwargs)
    if make_target is not None:
        return make_source or env_factory(run.cfg), make_target, source_kwargs, "custom"
    target_kwargs = {**source_kwargs, **cfg.target_env_kwargs}
    if target_kwargs == source_kwargs:
        raise ValueError(f"target_env_kwargs={cfg.target_env_kwargs} leave the run's env "
                         f"({run.cfg.env.name}, kwargs {source_kwargs}) unchanged: nothing to "
                         "align to")
    return (make_source or env_factory(run.cfg), env_factory(run.cfg, **cfg.target_env_kwargs),
            source_kwargs, target_kwargs)


def align(cfg: DictConfig | AlignRunConfig, make_source: Callable[[], Any] | None = None,
          make_target: Callable[[], Any] | None = None,
          print_fn: Callable[[str], None] = print) -> dict[str, Any]:
    """Runs the whole alignment (module docstring) and returns what ``align.json`` holds.

    ``make_source`` / ``make_target`` replace the env makers built from the run's config
    (``make_target`` then ignores ``target_env_kwargs``); for tests and custom shifts.
    """
    cfg = to_config(cfg)
    import jax

    if cfg.device != "auto":
        jax.config.update("jax_platforms", "cpu" if cfg.device == "cpu" else "cuda")
    import jax.numpy as jnp

    from rl import replay as replay_lib
    from rl.checkpoint import Checkpointer
    from rl.envs.vector import VectorEnv
    from rl.evaluate import evaluate
    from rl.logging import Logger
    from rl.loop import make_update_fn
    from rl.agents.alignment import Aligner

    started = time.time()
    run = load_run(cfg.run, cfg.checkpoint_step, cfg.seed_index, print_fn)
    agent, agent_state, spec = run.agent, run.state, run.agent.spec
    make_source, make_target, source_kwargs, target_kwargs = env_makers(
        cfg, run, make_source, make_target)
    a, n, repeat = cfg.alignment, cfg.num_envs, spec.action_repeat
    online_steps = cfg.frames // repeat // n           # per env
    pair_steps = cfg.pair_frames // repeat // n + 1 if cfg.pair_frames else 0
    if online_steps < 1:
        raise ValueError(f"frames={cfg.frames} is less than one step of {n} envs at action "
                         f"repeat {repeat}")
    if 0 < pair_steps < a.length:
        raise ValueError(f"pair_frames={cfg.pair_frames} gives {pair_steps} paired steps per "
                         f"env, fewer than alignment.length={a.length}; raise pair_frames or set "
                         "it to 0 (no paired-frame loss)")
    envs: list[Any] = []

    def vector(make: Callable, num: int, seed: int) -> VectorEnv:
        envs.append(VectorEnv(make, num, seed=seed, parallel=cfg.parallel))
        return envs[-1]

    logger = None
    try:
        try:
            eval_target = vector(make_target, cfg.eval_envs, cfg.eval_seed)
        except (TypeError, ValueError) as err:
            raise ValueError(f"cannot make the target env {run.cfg.env.name} with kwargs "
                             f"{target_kwargs} (target_env_kwargs={cfg.target_env_kwargs}): "
                             f"{err}") from err
        if (eval_target.spec.obs_shape, eval_target.spec.action) != (spec.obs_shape,
                                                                     spec.action):
            raise ValueError(f"the target env {eval_target.spec} does not fit the agent's {spec}")
        eval_source = (vector(make_source, cfg.eval_envs, cfg.eval_seed)
                       if cfg.eval_source else None)
        out_dir = pathlib.Path(cfg.out_dir or pathlib.Path(cfg.run) / "align"
                               / time.strftime("%Y-%m-%d_%H%M%S")).absolute()
        out_dir.mkdir(parents=True, exist_ok=True)
        config_dict = {**dataclasses.asdict(cfg), "out_dir": str(out_dir)}
        OmegaConf.save(OmegaConf.create(config_dict), out_dir / "align_config.yaml")
        logger = Logger(out_dir, config_dict, wandb_mode=cfg.wandb_mode, run_name=out_dir.name)
        key = jax.random.PRNGKey(cfg.seed)
        key, init_key, eval_key, source_key, pair_key = jax.random.split(key, 5)
        act = jax.jit(agent.act, static_argnames=("explore",))
        timeline = []

        def run_eval(state: Any, frames: int) -> dict[str, dict[str, float]]:
            results = {}
            for name, env in (("target", eval_target), ("source", eval_source)):
                if env is not None:
                    results[name] = evaluate(agent, act, state, env, cfg.eval_episodes,
                                             eval_key, jnp.int32(0))[0][0]
            logger.log(frames, {f"eval_{d}/{k}": v for d, r in results.items()
                                for k, v in r.items()})
            print_fn(f"[eval] align frames={frames} " + ", ".join(
                f"{d}: {r['return']:.1f} ± {r['return_std']:.1f}" for d, r in results.items()))
            timeline.append({"frames": frames, **{d: r["return"] for d, r in results.items()}})
            return results

        before = run_eval(agent_state, 0)

        # source data: the checkpoint's replay, or fresh frames from the source env
        if cfg.source_data == "collect":
            steps = cfg.source_frames // repeat // n + 1
            source = collect_source(agent, act, agent_state, vector(make_source, n, cfg.seed + 2),
                                    steps, source_key, cfg.explore)
            print_fn(f"collected {steps} source steps x {n} envs")
        else:
            source = run.replay
        if int(source.size) < a.length:
            raise ValueError(f"the source replay holds {int(source.size)} steps per env, fewer "
                             f"than alignment.length={a.length}")

        # paired frames (their target halves also go to the target replay)
        target = replay_lib.init(spec, (online_steps + pair_steps + 1) * n, n)
        pair = None
        if pair_steps:
            paired_env = vector(functools.partial(PairedEnv, make_source, make_target), n,
                                cfg.seed + 1)
            pair, target, returns = collect_pairs(agent, act, agent_state, paired_env,
                                                  pair_steps, pair_key,
                                                  cfg.pair_policy == "random", target)
            print_fn(f"collected {pair_steps} paired steps x {n} envs ({cfg.pair_policy} "
                     "policy" + (f", return {np.mean(returns):.1f})" if returns else ")"))

        # online: the frozen policy through the adapting encoder, interleaved with updates
        aligner = Aligner(a, agent.wm)
        align_state = aligner.init(init_key, agent_state.nets["world_model"])
        replays = {"source": source, "target": target, "pair": pair}
        update = make_update_fn(aligner, cfg.updates_per_call, True, cfg.fuse_updates)
        update_every = max(1, cfg.update_every_frames // repeat)
        collector = Collector(agent, act, vector(make_target, n, cfg.seed))
        replays["target"] = replay_lib.add_timestep(replays["target"], *collector.reset())
        step = updates = 0
        metrics: dict[str, Any] = {}
        next_log = cfg.log_every_frames // repeat
        eval_every = cfg.eval_every_frames // repeat
        next_eval = eval_every if eval_every else None
        bar = _progress(cfg.progress, online_steps * n * repeat)
        while step < online_steps * n:
            key, act_key, update_key = jax.random.split(key, 3)
            calls = (step + n) // update_every - step // update_every
            if pair_steps + 1 + step // n >= a.length and calls > 0:   # target steps per env
                for k in jax.random.split(update_key, calls):   # (align_state is donated)
                    align_state, _, metrics = update(align_state, replays, k, jnp.int32(step))
                    updates += cfg.updates_per_call
            acting = with_encoder(agent_state, align_state.encoder)
            ts, action = collector.step(acting, act_key, cfg.explore)
            replays["target"] = replay_lib.add_timestep(replays["target"], ts, action)
            step += n
            bar.update(n * repeat)
            if step >= next_log:
                next_log += cfg.log_every_frames // repeat
                row = {f"align/{k}": v for k, v in jax.device_get(metrics).items()}
                if collector.returns:
                    row["align/episode_return"] = float(np.mean(collector.returns))
                    collector.returns.clear()
                logger.log(step * repeat, {**row, "align/updates": updates,
                                           "align/wall_s": time.time() - started})
            if next_eval is not None and step >= next_eval:
                next_eval += eval_every
                after = run_eval(with_encoder(agent_state, align_state.encoder), step * repeat)
        bar.close()
        if timeline[-1]["frames"] != step * repeat or len(timeline) == 1:
            after = run_eval(with_encoder(agent_state, align_state.encoder), step * repeat)

        adapted = with_encoder(agent_state, align_state.encoder)
        if cfg.save_checkpoint:
            checkpointer = Checkpointer(out_dir / "checkpoints", keep=1)
            checkpointer.save(updates, {"agent": adapted},
                              {"source_run": str(pathlib.Path(cfg.run).absolute()),
                               "source_step": run.step, "updates": updates,
                               "fingerprint": run.cfg.fingerprint})
            checkpointer.close()
        result = {
            "run": str(pathlib.Path(cfg.run).absolute()), "checkpoint_step": run.step,
            "trained_frames": run.step * repeat, "env": run.cfg.env.name,
            "objective": objective_names(run.cfg), "source_env_kwargs": source_kwargs,
            "target_env_kwargs": target_kwargs, "before": before, "after": after,
            "return_change": {d: after[d]["return"] - before[d]["return"] for d in before},
            "timeline": timeline, "updates": updates, "paired_steps": pair_steps * n,
            "online_frames": step * repeat, "alignment": dataclasses.asdict(a),
            "final_metrics": {k: float(v) for k, v in jax.device_get(metrics).items()},
            "wall_s": time.time() - started, "out_dir": str(out_dir),
        }
        (out_dir / "align.json").write_text(json.dumps(result, indent=2))
        print_fn(f"wrote {out_dir / 'align.json'}: target return "
                 f"{before['target']['return']:.1f} -> {after['target']['return']:.1f} "
                 f"({updates} updates, {time.time() - started:.0f} s)")
        return result
    finally:
        if logger is not None:
            logger.close()
        for env in envs:
            env.close()


class _NoBar:
    def update(self, n): pass
    def close(self): pass


def _progress(enabled: bool, total: int):
    if not enabled:
        return _NoBar()
    from tqdm import tqdm

    return tqdm(total=total, unit="frame", unit_scale=True, dynamic_ncols=True,
                mininterval=1.0 if sys.stderr.isatty() else 30.0)


@hydra.main(config_path="../conf", config_name="align", version_base="1.3")
def main(cfg: DictConfig) -> float:
    return align(cfg)["after"]["target"]["return"]


if __name__ == "__main__":
    sys.exit(main())
