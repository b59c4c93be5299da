"""rl.throughput: frame rates over all envs and per vmapped seed, on a controlled clock."""
import pytest

from rl import throughput
from rl.throughput import Throughput


class _Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch):
    c = _Clock()
    monkeypatch.setattr(throughput.time, "perf_counter", c)
    return c


def test_env_fps_sums_all_envs_and_per_seed_divides_by_copies(clock):
    perf = Throughput(frames_per_env_step=2, seeds=3)
    perf.env_steps(12)          # 3 seeds x 4 envs stepped once
    perf.env_steps(12)
    clock.now += 4.0
    row = perf.report()
    assert row["perf/env_fps"] == pytest.approx(24 * 2 / 4.0)          # 12 frames/s in all
    assert row["perf/env_fps_per_seed"] == pytest.approx(24 * 2 / 4.0 / 3)   # 4 per seed
    perf.env_steps(3)           # report() restarts the window
    clock.now += 1.0
    assert perf.report()["perf/env_fps"] == pytest.approx(6.0)


def test_one_seed_has_no_per_seed_rate(clock):
    perf = Throughput(frames_per_env_step=4)
    perf.env_steps(5)
    clock.now += 2.0
    row = perf.report()
    assert row["perf/env_fps"] == pytest.approx(10.0)
    assert "perf/env_fps_per_seed" not in row


def test_bad_seed_count_is_named():
    with pytest.raises(ValueError, match="seeds=0"):
        Throughput(frames_per_env_step=2, seeds=0)
