"""Issue 31: the switches between SPR's official code (mila-iqia/spr on rlpyt) and ours, one test
each; every default is the official value (docs/FAITHFULNESS.md, SPR). Atari's life-loss NOOP
is tested in tests/test_envs.py (it needs ale-py)."""
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rl import replay as replay_lib
from rl.agents.rainbow import RainbowAgent, RainbowConfig
from rl.agents.rainbow.networks import NoisyDense, RainbowNetworks
from rl.core.types import ActionSpec, EnvSpec
from rl.envs import frame_stack

SPEC = EnvSpec("tiny", (16, 16, 1), ActionSpec.categorical(3))


def _replay_with_episodes(lengths: list[int], rng: np.random.Generator, capacity: int = 32):
    """One env's replay holding episodes of the given lengths; also returns the frames and
    is_first flags in the order they were written."""
    replay = replay_lib.init(SPEC, capacity, 1)
    add = jax.jit(replay_lib.add)
    frames, firsts = [], []
    for length in lengths:
        for t in range(length):
            obs = rng.integers(1, 256, (1, 16, 16, 1), dtype=np.uint8)   # never 0: pads show
            first, last = t == 0, t == length - 1
            replay = add(replay, obs, np.zeros(1, np.int32), np.ones(1, np.float32),
                         np.ones(1, np.float32), np.array([first]), np.array([last]),
                         np.array([False]))
            frames.append(obs)
            firsts.append(first)
    return replay, frames, firsts


def test_defaults_are_the_official_values():
    cfg = RainbowConfig()
    assert cfg.replay_new_priority == "one" and cfg.noisy_bias_sigma == "out"
    assert cfg.dueling_grad_scale == pytest.approx(2 ** -0.5) and cfg.frame_stack_pad == "zero"
    for field, bad in (("replay_new_priority", "min"), ("noisy_bias_sigma", "fan"),
                       ("frame_stack_pad", "edge"), ("dueling_grad_scale", 0.0)):
        with pytest.raises(ValueError, match=field):
            RainbowConfig(**{field: bad})


@pytest.mark.parametrize("mode, expected", [("one", 1.0), ("max", 5.0)])
def test_new_replay_rows_get_priority_one_or_the_running_max(mode, expected):
    """(a) rlpyt appends rows at ``default_priority`` 1; "max" gives the largest seen so far."""
    agent = RainbowAgent(RainbowConfig.tiny(replay_new_priority=mode), SPEC)
    replay, *_ = _replay_with_episodes([8, 8], np.random.default_rng(0))
    batch = agent.sample(replay, jax.random.PRNGKey(0))
    replay = agent.write_priorities(replay, batch, jnp.full((agent.cfg.batch_size,), 5.0))
    slot = int(replay.ptr)
    replay = replay_lib.add(replay, np.zeros((1, 16, 16, 1), np.uint8), np.zeros(1, np.int32),
                            np.zeros(1), np.ones(1), np.array([False]), np.array([False]),
                            np.array([False]))
    assert float(replay.priority[0, slot]) == expected


def test_dueling_head_scales_the_encoder_gradient_not_the_projection():
    """(b) rlpyt's dueling head: ``scale_grad(input, 2 ** -0.5)``; the forward pass and the
    gradient through SPR's projection (``q_l1``, which bypasses the scaling) are unchanged."""
    latent = jax.random.normal(jax.random.PRNGKey(0), (2, 3, 3, 16))
    grads, outputs = {}, {}
    for scale in (2 ** -0.5, 1.0):
        nets = RainbowNetworks(RainbowConfig.tiny(noisy=False, dueling_grad_scale=scale), 3)
        params = nets.init(jax.random.PRNGKey(1), (16, 16, 2))
        outputs[scale] = nets.logits(params, latent)
        grads[scale] = (jax.grad(lambda z: jnp.sum(nets.logits(params, z) ** 2))(latent),
                        jax.grad(lambda z: jnp.sum(nets.project(params, z) ** 2))(latent))
    np.testing.assert_allclose(outputs[2 ** -0.5], outputs[1.0], rtol=1e-6)
    np.testing.assert_allclose(grads[2 ** -0.5][0], 2 ** -0.5 * grads[1.0][0], rtol=1e-5,
                               atol=1e-7)
    np.testing.assert_allclose(grads[2 ** -0.5][1], grads[1.0][1], rtol=1e-6)


def test_noisy_bias_sigma_is_sigma0_over_sqrt_out_features():
    """(c) SPR's NoisyLinear: ``bias_sigma = std_init / sqrt(out_features)``; "in" is the
    Fortunato et al. formula (what this code did before)."""
    x = jnp.ones((2, 9))
    for mode, fan in (("out", 4), ("in", 9)):
        params = NoisyDense(4, 0.5, mode).init({"params": jax.random.PRNGKey(0)}, x)["params"]
        np.testing.assert_allclose(params["sigma_bias"], 0.5 / np.sqrt(fan), rtol=1e-6)
        np.testing.assert_allclose(params["sigma_kernel"], 0.5 / np.sqrt(9), rtol=1e-6)
    head = RainbowNetworks(RainbowConfig.tiny(), 3).init(jax.random.PRNGKey(0), (16, 16, 2))
    out = head["params"]["head"]["advantage_out"]["sigma_bias"]
    np.testing.assert_allclose(out, 0.5 / np.sqrt(out.shape[0]), rtol=1e-6)


def test_learning_starts_after_2000_random_steps():
    """(d) SPR's ``min_steps_learn`` 2000 with epsilon 1 until then (rlpyt's ramp from itr 2000
    to 2001); ours: 2000 warm-up steps of uniform random actions, then the 1 -> 0 schedule has
    reached 1/2001 and is 0 from step 2001."""
    from hydra import compose, initialize_config_dir

    from experiments import config as config_lib

    config_lib.register()
    conf = pathlib.Path(__file__).parents[1] / "conf"
    for overrides in (["agent=rainbow", "env=atari/Pong"],
                      ["experiment=der_atari100k", "env=atari/Pong"],
                      ["experiment=spr_atari100k", "env=atari/Pong"]):
        with initialize_config_dir(str(conf), version_base="1.3"):
            cfg = compose("config", overrides=overrides)
        assert cfg.loop.warmup_frames // 4 == 2000, overrides    # frame skip 4
    from rl.core.schedules import parse_schedule

    epsilon = parse_schedule(RainbowConfig().epsilon_schedule)
    assert float(epsilon(2000)) < 1e-3 and float(epsilon(2001)) == 0.0


@pytest.mark.parametrize("pad", ["zero", "repeat"])
def test_acting_and_replayed_stacks_pad_episode_starts_alike(pad):
    """(e) rlpyt zero-pads the stack before an episode's first frame; DrQ-v2 repeats it. The
    acting carry and the stacks the replay gathers must agree in either mode."""
    replay, frames, firsts = _replay_with_episodes([2, 5, 3], np.random.default_rng(1))
    stack = frame_stack.init(1, (16, 16, 1), 4)
    push = jax.jit(frame_stack.push, static_argnums=3)
    for slot, (obs, first) in enumerate(zip(frames, firsts)):
        stack = push(stack, obs, np.array([first]), pad)
        gathered = replay_lib.gather_stack(replay, jnp.zeros(1, jnp.int32),
                                           jnp.full(1, slot, jnp.int32), 4, pad)
        np.testing.assert_array_equal(np.asarray(stack), np.asarray(gathered), err_msg=str(slot))
        if first:
            oldest = np.asarray(stack)[..., 0]
            assert (oldest == 0).all() if pad == "zero" else (oldest == obs[..., 0]).all()


def test_rainbow_acts_and_samples_with_its_frame_stack_pad():
    agent = RainbowAgent(RainbowConfig.tiny(frame_stack=3), SPEC)
    state = agent.init(jax.random.PRNGKey(0))
    obs = np.full((1, 16, 16, 1), 7, np.uint8)
    _, carry = agent.act(state, agent.initial_carry(1), obs, np.array([True]),
                         jax.random.PRNGKey(1), jnp.asarray(0), explore=False)
    assert (np.asarray(carry)[..., :2] == 0).all() and (np.asarray(carry)[..., 2] == 7).all()
    replay, *_ = _replay_with_episodes([2] * 8, np.random.default_rng(2))
    batch = agent.sample(replay, jax.random.PRNGKey(3))   # starts: first steps of episodes
    assert (np.asarray(batch.obs)[..., :2] == 0).all() and (np.asarray(batch.obs)[..., 2] > 0).all()
    assert (np.asarray(batch.next_obs)[..., 0] == 0).all()
