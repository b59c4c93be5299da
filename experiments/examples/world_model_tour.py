"""A tour of the Python API without Hydra, in notebook cells (``# %%``; VS Code and Jupytext
open them as a notebook): an env, a world model and an agent from config objects, a few
updates, an imagined rollout decoded to pixels, and an evaluation.

    python -m experiments.examples.world_model_tour

Every object here is what ``experiments.train`` builds from the Hydra config: the training
loop (``rl.loop.Trainer``) only adds scheduling, logging and checkpoints around the same calls.
``tests/test_examples.py`` runs it at tiny sizes.
"""
# %% imports
from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from rl import replay as replay_lib
from rl.agents.imagination import ImaginationAgent
from rl.agents.imagination.config import preset
from rl.envs import registry
from rl.envs.vector import VectorEnv
from rl.evaluate import evaluate
from rl.updates import learn_step


def main(random_steps: int = 64, updates: int = 4, eval_episodes: int = 2) -> dict:
    # %% an env: the toy reach task (32x32 pixels); a VectorEnv of 2 copies, seeded
    make_env = functools.partial(registry.make, "toy/reach")
    env = VectorEnv(make_env, num_envs=2, seed=0)
    spec = env.spec
    print(spec)

    # %% an agent from its config: Dreamer-v1 at tiny sizes (the RSSM world model inside)
    cfg = dataclasses.replace(preset("debug"), batch_size=4, length=8, horizon=5)
    agent = ImaginationAgent(cfg, spec)
    state = agent.init(jax.random.key(0))
    world_model = agent.wm                     # the world-model protocol: rl/core/world_model.py
    print(type(world_model).__name__, "with", cfg.world_model)

    # %% data: random actions into the shared replay (one ring of steps per env)
    replay = replay_lib.init(spec, capacity=2 * (random_steps + 1), num_envs=env.num_envs)
    rng = np.random.default_rng(0)
    ts = env.reset()
    replay = replay_lib.add_timestep(replay, ts, np.zeros((env.num_envs, *spec.action.shape),
                                                          spec.action.dtype))
    for _ in range(random_steps):
        action = rng.uniform(spec.action.low, spec.action.high,
                             (env.num_envs, *spec.action.shape)).astype(spec.action.dtype)
        ts = env.step(action)
        replay = replay_lib.add_timestep(replay, ts, action)

    # %% updates: sample + update in one jit (the loop fuses K of these with lax.scan)
    learn = jax.jit(functools.partial(learn_step, agent))
    key = jax.random.key(1)
    losses = []
    for step in range(updates):
        key, update_key = jax.random.split(key)
        state, replay, metrics = learn(state, replay, update_key, jnp.asarray(step))
        losses.append(float(metrics["wm/loss/image"]))
    print("image loss per update:", np.round(losses, 2))

    # %% imagine: filter a replayed sequence, then roll the world model forward under the
    # actor and decode the imagined latents to pixels
    key, sample_key, observe_key, imagine_key = jax.random.split(key, 4)
    batch = agent.sample(replay, sample_key)
    params = state.nets["world_model"]
    last, _ = world_model.observe(params, world_model.initial(cfg.batch_size), batch,
                                  observe_key)
    policy = lambda feat, k: agent.actor.sample(state.nets["actor"], feat, k)
    imagined = world_model.imagine(params, last, policy, cfg.horizon, imagine_key)
    frames = world_model.decode_uint8(params, imagined.feats)
    print("imagined frames:", frames.shape, frames.dtype)

    # %% the open-loop video the loop logs: truth | model | error
    video = agent.report(state, batch, key)["openloop"]

    # %% evaluate the deterministic policy on a separate env
    eval_env = VectorEnv(make_env, num_envs=1, seed=1_000_003)
    act = jax.jit(agent.act, static_argnames=("explore",))
    (result,), _ = evaluate(agent, act, state, eval_env, eval_episodes, jax.random.key(2),
                            jnp.asarray(updates))
    print("evaluation:", result)
    env.close()
    eval_env.close()
    return {"losses": losses, "imagined": np.asarray(frames), "video": np.asarray(video),
            "evaluation": result}


if __name__ == "__main__":
    main()
