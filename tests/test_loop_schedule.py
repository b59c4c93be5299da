"""The loop's schedule: budgets and periods in agent steps, derived once from frame counts."""
import numpy as np
import pytest

from rl.agents.seed_stack import SeedLayout
from rl.episodes import EpisodeStats
from rl.loop import LoopConfig
from rl.loop_schedule import Every, LoopSchedule, next_multiple


class _Agent:
    min_replay_steps = 3
    replayed_steps_per_update = 64


def test_frames_become_agent_steps():
    cfg = LoopConfig(frames=1000, warmup_frames=40, log_every_frames=100, eval_every_frames=250,
                     checkpoint_every_frames=0, update_every_frames=10, trace_at_frames=20)
    s = LoopSchedule.of(cfg, _Agent(), action_repeat=2, envs_per_seed=4)
    assert (s.total_steps, s.warmup_steps, s.update_every) == (500, 20, 5)
    assert (s.log_every, s.eval_every, s.checkpoint_every, s.trace_start) == (50, 125, 0, 10)
    assert s.learning_starts == max(20, 4 * (3 + 1))
    ratio = LoopSchedule.of(LoopConfig(train_ratio=32.0, updates_per_call=2), _Agent(), 2, 1)
    assert ratio.update_every == 4                  # 64 replayed steps x 2 updates / 32
    with pytest.raises(ValueError, match="train_ratio needs an agent that replays sequences"):
        LoopSchedule.of(LoopConfig(train_ratio=1.0), object(), 1, 1)


@pytest.mark.parametrize("envs", [1, 4])
def test_update_calls_count_every_crossed_multiple(envs):
    """One call per multiple of ``update_every`` crossed, whatever the number of envs."""
    s = LoopSchedule.of(LoopConfig(frames=120, warmup_frames=40, update_every_frames=10),
                        _Agent(), action_repeat=1, envs_per_seed=envs)
    calls = sum(s.update_calls(step) for step in range(0, 120, envs))
    assert calls == 8 and all(s.update_calls(step) == 0 for step in range(0, 40, envs))


def test_periodic_events_fire_once_per_period_and_resume_in_phase():
    every = Every(30, start=0)
    fired = [step for step in range(0, 200, 4) if every.due(step)]
    assert fired == [32, 60, 92, 120, 152, 180]
    resumed = Every(30, start=92)                   # restarted after the step-92 event
    assert resumed.next == next_multiple(92, 30) == 120
    assert not any(Every(30, 0, enabled=False).due(step) for step in range(200))


def test_episode_stats_go_to_the_seed_that_owns_the_env():
    class Ts:
        is_last = np.array([True, False, False, True, True, False])
        info = {"episode_return": np.arange(6.0), "episode_length": np.full(6, 10.0)}

    stats = EpisodeStats(SeedLayout(3, 2, 1))
    assert stats.add(Ts) == 3
    assert [stats.pop(s).get("train/episode_return") for s in range(3)] == [0.0, 3.0, 4.0]
    assert stats.pop(0) == {}
