"""Distracted DMC: procedural distractor pools, background masks from segmentation rendering,
compositing that touches only background pixels, determinism, appearance shifts."""
import numpy as np
import pytest

from rl.envs import distractors, make


def test_pools_are_deterministic_and_disjoint():
    train, again, test = (distractors.make_pool(p) for p in ("train", "train", "test"))
    assert len(train) == len(test) == distractors.POOL_SIZE
    for a, b in zip(train, again):
        np.testing.assert_array_equal(a.freqs, b.freqs)
    train_freqs = {tuple(np.round(c.freqs.ravel(), 6)) for c in train}
    assert not train_freqs & {tuple(np.round(c.freqs.ravel(), 6)) for c in test}
    assert {len(c.radii) for c in train} != {len(c.radii) for c in test}
    with pytest.raises(ValueError, match=r"distractor pool 'val'; valid: \['train', 'test'\]"):
        distractors.make_pool("val")


def test_clips_move_and_frames_are_pure():
    clip = distractors.make_pool("train")[0]
    f0, f1 = distractors.clip_frame(clip, 0, 32), distractors.clip_frame(clip, 1, 32)
    assert f0.shape == (32, 32, 3) and f0.dtype == np.uint8
    assert np.abs(f0.astype(int) - f1.astype(int)).mean() > 0.5       # it moves
    np.testing.assert_array_equal(f0, distractors.clip_frame(clip, 0, 32))
    d = distractors.Distractor("train", 32)
    with pytest.raises(RuntimeError, match="reset"):
        d.next_frame()


def test_composite_and_appearance_shift_by_hand():
    frame = np.full((2, 2, 3), 10, np.uint8)
    frame[0, 0] = (100, 50, 20)
    backdrop = np.full((2, 2, 3), 200, np.uint8)
    background = np.array([[False, True], [True, True]])
    out = distractors.composite(frame, background, backdrop)
    np.testing.assert_array_equal(out[0, 0], (100, 50, 20))
    assert (out[background] == 200).all()
    shifted = distractors.shift_appearance(frame, ~background, "color")
    np.testing.assert_array_equal(shifted[0, 0], (14, 70, 35))   # (b, r, g) * 0.7, truncated
    np.testing.assert_array_equal(shifted[background], frame[background])
    with pytest.raises(ValueError, match="appearance_shift 'blur'"):
        distractors.shift_appearance(frame, ~background, "blur")


@pytest.fixture(scope="module")
def dm_suite():
    return pytest.importorskip("dm_control.suite")


@pytest.mark.parametrize("task", ["walker_walk", "cheetah_run"])
def test_distractor_replaces_only_background_pixels(dm_suite, task):
    plain = make(f"dmc/{task}", size=64)
    env = make(f"dmc/{task}", size=64, distractor="train")
    for step in range(3):
        if step == 0:
            a, b = plain.reset(5)[0], env.reset(5)[0]
        else:
            action = np.full(env.spec.action.shape, 0.3, np.float32)
            a, b = plain.step(action)[0], env.step(action)[0]
        background = env.background_mask()
        assert 0.3 < background.mean() < 0.99            # sky + floor, not the robot
        np.testing.assert_array_equal(a[~background], b[~background])
        assert ((a != b).any(-1) <= background).all()      # changes only where the mask is
        assert (a != b).any(-1).mean() > 0.5 * background.mean()
    # same seed, same frames; another seed, another clip
    again = make(f"dmc/{task}", size=64, distractor="train")
    np.testing.assert_array_equal(again.reset(5)[0], env.reset(5)[0])
    assert not np.array_equal(again.reset(6)[0], env.reset(5)[0])
    for e in (plain, env, again):
        e.close()


def test_train_and_test_pools_and_colour_shift_in_the_env(dm_suite):
    train = make("dmc/walker_walk", size=64, distractor="train")
    test = make("dmc/walker_walk", size=64, distractor="test", appearance_shift="color")
    plain = make("dmc/walker_walk", size=64)
    a, b, c = train.reset(1)[0], test.reset(1)[0], plain.reset(1)[0]
    background = train.background_mask()
    assert not np.array_equal(a[background], b[background])
    assert not np.array_equal(b[~background], c[~background])     # the robot is recoloured
    with pytest.raises(ValueError, match=r"distractor='video' is not allowed"):
        make("dmc/walker_walk", distractor="video")
    with pytest.raises(ValueError, match="background_mask needs distractor"):
        plain.background_mask()
    for e in (train, test, plain):
        e.close()


@pytest.mark.parametrize("how", ["close", "drop"])
def test_closing_one_env_leaves_the_other_envs_rendering(dm_suite, how):
    # mujoco's Renderer.close frees its GL objects in whatever context is current; before the
    # fix that was the live env's, whose segmentation rendering then broke
    import gc

    def frames(env):
        action = np.full(env.spec.action.shape, 0.3, np.float32)
        return [env.reset(1)[0]] + [env.step(action)[0] for _ in range(2)]

    kept = make("dmc/walker_walk", size=64, distractor="train")
    other = make("dmc/walker_walk", size=64, distractor="train")
    other.reset(0)
    kept.reset(1)   # kept's GL context is now the current one
    if how == "close":
        other.close()
    else:
        del other
        gc.collect()
    got = frames(kept)
    fresh = make("dmc/walker_walk", size=64, distractor="train")
    np.testing.assert_array_equal(np.stack(got), np.stack(frames(fresh)))
    for e in (kept, fresh):
        e.close()


# ------------------------------------------------------------------ natural-image pool (issue 31)
def _stream(pool: str, seeds: list[int], frames_per_episode: int, size: int = 32) -> list:
    d = distractors.NaturalDistractor(pool, size)
    frames = []
    for seed in seeds:
        d.reset(seed)
        frames += [d.next_frame() for _ in range(frames_per_episode)]
    return frames


def test_natural_stream_is_grayscale_deterministic_per_seed_and_pools_differ():
    a = _stream("train", [5], 4)
    assert a[0].shape == (32, 32, 3) and a[0].dtype == np.uint8
    assert all((f[..., 0] == f[..., 1]).all() and (f[..., 1] == f[..., 2]).all() for f in a)
    assert a[0].std() > 10                                       # a photo, not a flat fill
    np.testing.assert_array_equal(np.stack(a), np.stack(_stream("train", [5], 4)))
    assert not np.array_equal(a[0], _stream("train", [6], 1)[0])
    assert not np.array_equal(a[0], _stream("test", [5], 1)[0])
    with pytest.raises(ValueError, match=r"distractor_pool='video'"):
        distractors.make_distractor("video", "train", 32)
    with pytest.raises(RuntimeError, match="reset"):
        distractors.NaturalDistractor("train", 32).next_frame()


def test_natural_stream_runs_on_across_episodes_like_a_video():
    """Later resets (other seeds) do not restart it: three episodes of 5 frames are one
    15-frame stream, whose consecutive frames are small shifts of each other."""
    episodes = _stream("train", [5, 9, 11], 5)
    straight = _stream("train", [5], 15)
    np.testing.assert_array_equal(np.stack(episodes), np.stack(straight))
    steps = [np.abs(a.astype(int) - b.astype(int)).mean() for a, b in zip(straight, straight[1:])]
    jump = np.abs(straight[0].astype(int) - _stream("train", [6], 1)[0].astype(int)).mean()
    assert 0 < max(steps) < jump                                  # it moves, and smoothly


def test_natural_pool_in_the_env(dm_suite):
    env = make("dmc/walker_walk", size=64, distractor="train", distractor_pool="natural")
    obs = env.reset(1)[0]
    background = env.background_mask()
    gray = obs[background]
    assert (gray[:, 0] == gray[:, 1]).all() and (gray[:, 1] == gray[:, 2]).all()
    with pytest.raises(ValueError, match=r"distractor_pool='photos' is not allowed"):
        make("dmc/walker_walk", distractor="train", distractor_pool="photos")
    env.close()
