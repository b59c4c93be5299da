"""rl/evaluate.py: which episodes an evaluation counts when episode lengths vary."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rl.core.types import ActionSpec, EnvSpec
from rl.envs.vector import VectorEnv
from rl.evaluate import eval_reset_seed, evaluate

SPEC = EnvSpec("fixed_length", (4, 4, 1), ActionSpec.categorical(2))


class FixedLengthEnv:
    """Reward 1 per step; every episode lasts ``length`` steps (so its return is ``length``)."""

    info_keys = ()

    def __init__(self, length: int):
        self.spec, self.length, self.t = SPEC, length, 0

    def reset(self, seed):
        self.t = 0
        return np.zeros(SPEC.obs_shape, np.uint8), {}

    def step(self, action):
        self.t += 1
        return np.zeros(SPEC.obs_shape, np.uint8), 1.0, self.t >= self.length, False, {}

    def close(self):
        pass


class NullAgent:
    def initial_carry(self, num_envs):
        return jnp.zeros(num_envs)


def null_act(state, carry, obs, is_first, key, step, explore):
    return jnp.zeros(obs.shape[0], jnp.int32), carry


def run(lengths, episodes, groups=1):
    made = iter(lengths)
    env = VectorEnv(lambda: FixedLengthEnv(next(made)), len(lengths), seed=0)
    results, _ = evaluate(NullAgent(), null_act, None, env, episodes, jax.random.PRNGKey(0),
                          jnp.asarray(0), groups=groups)
    return results


def test_every_env_contributes_its_fixed_share_not_the_fastest_episodes():
    # env 0 ends after 2 steps, env 1 after 6: env 0 finishes twice before env 1 once, so
    # counting the first two episodes to end would report 2.0 instead of (2 + 6) / 2
    (result,) = run([2, 6], episodes=2)
    assert result["return"] == pytest.approx(4.0)
    assert result["episodes"] == 2
    # 5 episodes on 2 envs: env 0 plays 3, env 1 plays 2 -> (3*2 + 2*6) / 5
    (result,) = run([2, 6], episodes=5)
    assert result["return"] == pytest.approx(18 / 5) and result["episode_length"] == pytest.approx(18 / 5)


def test_groups_count_their_own_envs():
    # two seed blocks of 2 envs each; block 1's envs are the slow ones
    first, second = run([1, 3, 5, 7], episodes=3, groups=2)
    assert first["return"] == pytest.approx((1 + 1 + 3) / 3)
    assert second["return"] == pytest.approx((5 + 5 + 7) / 3)
    assert first["episodes"] == second["episodes"] == 3


def test_envs_that_played_their_share_stop_stepping():
    made = iter([2, 6])
    env = VectorEnv(lambda: FixedLengthEnv(next(made)), 2, seed=0)
    steps = [0, 0]
    for i, e in enumerate(env._envs):   # count the steps each (in-process) env takes
        def counted(action, e=e, i=i, step=e.step):
            steps[i] += 1
            return step(action)
        e.step = counted
    (result,), _ = evaluate(NullAgent(), null_act, None, env, 2, jax.random.PRNGKey(0),
                           jnp.asarray(0))
    assert result["return"] == pytest.approx(4.0)
    # env 0's one episode takes 2 steps; it then waits while env 1 plays its 6
    assert steps == [2, 6]


class SeedRecordingEnv(FixedLengthEnv):
    """Records every reset seed it is given (one shared list per VectorEnv)."""

    def __init__(self, seeds: list):
        super().__init__(length=2)
        self.seeds = seeds

    def reset(self, seed):
        self.seeds.append(seed)
        return super().reset(seed)


def _seeds_of_evaluations(base_seed: int, evaluations: int) -> list[list[int]]:
    """The reset seeds each of ``evaluations`` evaluations uses, as the loop calls them."""
    seeds: list[int] = []
    env = VectorEnv(lambda: SeedRecordingEnv(seeds), 2, seed=base_seed)
    per_evaluation = []
    for k in range(evaluations):
        seeds.clear()
        evaluate(NullAgent(), null_act, None, env, 3, jax.random.PRNGKey(k), jnp.asarray(0),
                 reset_seed=eval_reset_seed(base_seed, k))
        per_evaluation.append(list(seeds))
    return per_evaluation


def test_each_evaluation_plays_new_episodes_and_runs_with_one_seed_the_same():
    first, second, third = _seeds_of_evaluations(base_seed=7, evaluations=3)
    assert len(first) == 3                       # 3 episodes on 2 envs: 2 + 1 resets
    assert not set(first) & set(second) and not set(second) & set(third)
    assert _seeds_of_evaluations(base_seed=7, evaluations=3) == [first, second, third]
    assert _seeds_of_evaluations(base_seed=8, evaluations=1)[0] != first
    # evaluation 0 keeps the episodes earlier runs were evaluated on
    assert eval_reset_seed(7, 0) == 7 and eval_reset_seed(7, 1) == eval_reset_seed(7, 1) != 7


def test_no_reset_seed_replays_the_same_episodes():
    seeds: list[int] = []
    env = VectorEnv(lambda: SeedRecordingEnv(seeds), 1, seed=3)
    for _ in range(2):
        evaluate(NullAgent(), null_act, None, env, 1, jax.random.PRNGKey(0), jnp.asarray(0))
    assert seeds[0] == seeds[1]
