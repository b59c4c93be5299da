"""Vmapped seeds (``SeedStack``): independent copies, each on its own envs and replay block."""
import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rl import replay as replay_lib
from rl.agents.drqv2 import DrQV2Agent, DrQV2Config
from rl.agents.seed_stack import SeedLayout, SeedStack, member
from rl.core.types import ActionSpec, EnvSpec
from rl.loop import make_update_fn

SPEC = EnvSpec("tiny", (32, 32, 3), ActionSpec.box(2))
CFG = DrQV2Config.tiny(num_expl_steps=0)
SEEDS, ENVS_PER_SEED = 3, 2


def env_tagged_replay(steps: int = 12) -> replay_lib.ReplayState:
    """Every pixel of env e's frames equals e; rewards equal e too."""
    total = SEEDS * ENVS_PER_SEED
    replay = replay_lib.init(SPEC, capacity=total * 32, num_envs=total)
    add = jax.jit(replay_lib.add)
    env_id = np.arange(total)
    obs = np.broadcast_to(env_id[:, None, None, None], (total, 32, 32, 3)).astype(np.uint8)
    for t in range(steps):
        replay = add(replay, obs, np.zeros((total, 2), np.float32), env_id.astype(np.float32),
                     np.ones(total, np.float32), np.full(total, t == 0), np.zeros(total, bool),
                     np.zeros(total, bool))
    return replay


@pytest.fixture(scope="module")
def stack():
    agent = SeedStack(DrQV2Agent(CFG, SPEC), SEEDS)
    return agent, agent.init(jax.random.PRNGKey(0))


def test_copies_have_a_seed_axis_and_differ(stack):
    agent, state = stack
    for leaf in jax.tree.leaves(state):
        assert leaf.shape[0] == SEEDS
    kernel = next(x for x in jax.tree.leaves(state.nets["encoder"]) if x.ndim == 5)
    assert not np.allclose(kernel[0], kernel[1])   # different init keys


def test_each_copy_samples_only_its_own_envs(stack):
    agent, _ = stack
    batch = jax.jit(agent.sample)(env_tagged_replay(), jax.random.PRNGKey(1))
    chex.assert_shape(batch.obs, (SEEDS, CFG.batch_size, 32, 32, 3 * CFG.frame_stack))
    for s in range(SEEDS):
        own = np.arange(s * ENVS_PER_SEED, (s + 1) * ENVS_PER_SEED)
        assert set(np.unique(np.asarray(batch.obs[s]))) <= set(own)
        assert set(np.asarray(batch.env_index[s]).tolist()) <= set(range(ENVS_PER_SEED))


def test_act_and_update_split_and_merge_envs(stack):
    agent, state = stack
    total = SEEDS * ENVS_PER_SEED
    carry = agent.initial_carry(total)
    obs = jnp.zeros((total, 32, 32, 3), jnp.uint8)
    actions, carry = jax.jit(agent.act, static_argnames="explore")(
        state, carry, obs, jnp.ones(total, bool), jax.random.PRNGKey(2), jnp.asarray(0),
        explore=False)
    chex.assert_shape(actions, (total, 2))
    # same obs, different copies: different deterministic actions
    assert not np.allclose(actions[0], actions[ENVS_PER_SEED])
    update = make_update_fn(agent, 1, fused_sampling=True)
    state1, _, metrics = update(jax.tree.map(jnp.copy, state), env_tagged_replay(),
                                jax.random.PRNGKey(3), jnp.asarray(100))
    chex.assert_shape(metrics["critic_loss"], (SEEDS,))
    # copy s's rewards are its own env ids (3-step discounted sums of a constant)
    per_step = np.asarray(metrics["batch_reward"]) / (1 + 0.99 + 0.99 ** 2)
    for s in range(SEEDS):
        assert s * ENVS_PER_SEED - 1e-4 <= per_step[s] <= (s + 1) * ENVS_PER_SEED - 1 + 1e-4
    assert all(np.isfinite(x).all() for x in jax.tree.leaves(member(state1, 2)))


def test_bad_seed_counts_raise():
    with pytest.raises(ValueError, match="num_seeds"):
        SeedStack(DrQV2Agent(CFG, SPEC), 0)
    with pytest.raises(ValueError, match="cannot be split evenly"):
        SeedStack(DrQV2Agent(CFG, SPEC), 2).initial_carry(3)


def test_dispatched_updates_equal_scanned_ones():
    """``fuse_updates=False`` (K dispatches) computes what one K-step scan computes."""
    agent = DrQV2Agent(CFG, SPEC)
    replay = env_tagged_replay()
    state = agent.init(jax.random.PRNGKey(0))
    outs = []
    for fuse in (True, False):
        update = make_update_fn(agent, 3, fused_sampling=True, fuse=fuse)
        outs.append(update(jax.tree.map(jnp.copy, state), replay, jax.random.PRNGKey(4),
                           jnp.asarray(100)))
    # same batches and keys; only float reassociation differs (Adam magnifies it on tiny grads,
    # while one update moves a weight by up to lr = 1e-4)
    chex.assert_trees_all_close(outs[0][0], outs[1][0], atol=3e-5)
    chex.assert_trees_all_close(outs[0][2], outs[1][2], rtol=1e-3, atol=1e-5)


def test_vmapped_updates_equal_mapped_ones():
    """``update_mode="vmap"`` computes what the copies updated in turn compute."""
    replay = env_tagged_replay()
    outs = []
    for mode in ("map", "vmap"):
        agent = SeedStack(DrQV2Agent(CFG, SPEC), SEEDS, update_mode=mode)
        update = make_update_fn(agent, 1, fused_sampling=True)
        outs.append(update(agent.init(jax.random.PRNGKey(0)), replay, jax.random.PRNGKey(5),
                           jnp.asarray(100)))
    chex.assert_trees_all_close(outs[0][0], outs[1][0], atol=3e-5)
    chex.assert_trees_all_close(outs[0][2], outs[1][2], rtol=1e-3, atol=1e-5)
    with pytest.raises(ValueError, match="update_mode='pmap'"):
        SeedStack(DrQV2Agent(CFG, SPEC), SEEDS, update_mode="pmap")


@pytest.mark.parametrize("mode", ["map", "vmap"])
def test_prioritized_copies_write_their_own_priorities(mode):
    """PER under SeedStack: each copy writes its new priorities into its own envs only, and
    each keeps its own max priority (the replay's priority groups), as separate runs would."""
    from rl.agents.rainbow import RainbowAgent, RainbowConfig

    spec = EnvSpec("tiny", (16, 16, 1), ActionSpec.categorical(3))
    # "max": new rows at the running max (the official "one" keeps every max at 1)
    agent = SeedStack(RainbowAgent(RainbowConfig.tiny(replay_new_priority="max"), spec), SEEDS,
                      update_mode=mode)
    total = SEEDS * ENVS_PER_SEED
    replay = replay_lib.init(spec, total * 32, total, priority_groups=SEEDS)
    add = jax.jit(replay_lib.add)
    rng = np.random.default_rng(0)
    for t in range(16):
        replay = add(replay, rng.integers(0, 256, (total, 16, 16, 1), dtype=np.uint8),
                     rng.integers(0, 3, total).astype(np.int32), np.ones(total, np.float32),
                     np.ones(total, np.float32), np.full(total, t == 0),
                     np.zeros(total, bool), np.zeros(total, bool))
    # a low max so that each copy's new max is its own largest KL
    replay = replay.replace(max_priority=jnp.full(SEEDS, 1e-4, jnp.float32))
    before = np.asarray(replay.priority)
    update = make_update_fn(agent, 1, fused_sampling=True)
    state, replay, metrics = update(agent.init(jax.random.PRNGKey(0)), replay,
                                    jax.random.PRNGKey(6), jnp.asarray(100))
    chex.assert_shape(metrics["kl"], (SEEDS,))
    after = np.asarray(replay.priority)
    changed = np.argwhere(after != before)
    assert len(changed) > 0
    maxima = np.asarray(replay.max_priority)
    chex.assert_shape(maxima, (SEEDS,))
    for s in range(SEEDS):
        block = slice(s * ENVS_PER_SEED, (s + 1) * ENVS_PER_SEED)
        written = after[block][after[block] != before[block]]
        assert len(written) > 0, f"copy {s} wrote no priorities"
        # (>=: a slot drawn twice keeps one of its priorities, the max sees both)
        assert maxima[s] >= written.max() - 1e-7 and maxima[s] > 1e-4
    assert len(set(maxima.round(6).tolist())) == SEEDS   # independent maxima
    # new entries take their own copy's max priority
    replay = add(replay, np.zeros((total, 16, 16, 1), np.uint8), np.zeros(total, np.int32),
                 np.zeros(total, np.float32), np.ones(total, np.float32), np.zeros(total, bool),
                 np.zeros(total, bool), np.zeros(total, bool))
    newest = np.asarray(replay.priority)[:, int(replay.ptr) - 1]
    np.testing.assert_allclose(newest, np.repeat(maxima, ENVS_PER_SEED))


# ---- the host-side layout ---------------------------------------------------------------------
def test_layout_env_blocks_and_totals():
    layout = SeedLayout(SEEDS, ENVS_PER_SEED, eval_envs_per_seed=4)
    assert (layout.total_envs, layout.total_eval_envs) == (SEEDS * ENVS_PER_SEED, SEEDS * 4)
    assert [layout.env_block(s) for s in range(SEEDS)] == [slice(0, 2), slice(2, 4), slice(4, 6)]
    assert [layout.seed_of_env(e) for e in range(layout.total_envs)] == [0, 0, 1, 1, 2, 2]
    assert layout.replay_capacity(100) == 300 and layout.eval_groups == SEEDS
    assert SeedLayout.of_envs(SEEDS, 6, 12) == layout
    with pytest.raises(ValueError, match="env has 7 envs; num_seeds=3 needs a multiple"):
        SeedLayout.of_envs(SEEDS, 7, 12)
    with pytest.raises(ValueError, match="num_seeds=0; must be an int >= 1"):
        SeedLayout(0, 1, 1)
    with pytest.raises(ValueError, match="seed_index=3; the run has num_seeds=3"):
        layout.env_block(3)


def test_layout_fans_out_one_logger_per_seed(tmp_path):
    import pathlib

    layout = SeedLayout(SEEDS, ENVS_PER_SEED, 1)
    assert layout.log_dirs(tmp_path) == [tmp_path / f"seed_{k}" for k in range(SEEDS)]
    assert layout.run_names("run") == ["run-seed_0", "run-seed_1", "run-seed_2"]
    layout.check_loggers([object()] * SEEDS)
    with pytest.raises(ValueError, match="num_seeds=3 needs one logger per seed, got 1"):
        layout.check_loggers([object()])
    single = SeedLayout(1, 4, 1)
    assert single.log_dirs(pathlib.Path("r")) == [pathlib.Path("r")]
    assert single.run_names("run") == ["run"]


def test_layout_priority_groups_match_the_replay_blocks():
    layout = SeedLayout(SEEDS, ENVS_PER_SEED, 1)
    replay = replay_lib.init(SPEC, capacity=layout.replay_capacity(32), num_envs=layout.total_envs,
                             priority_groups=layout.priority_groups)
    assert replay.max_priority.shape == (SEEDS,)
    tagged = env_tagged_replay().replace(
        max_priority=jnp.arange(SEEDS, dtype=jnp.float32))
    for s in range(SEEDS):
        block = layout.replay_block(tagged, s)
        assert block.num_envs == ENVS_PER_SEED and block.max_priority.tolist() == [float(s)]
        filled = np.asarray(block.obs[:, :int(block.size)])
        assert set(np.unique(filled)) == {2 * s, 2 * s + 1}
        assert int(block.ptr) == int(tagged.ptr) and int(block.size) == int(tagged.size)
    shared = env_tagged_replay()       # one priority group: every copy keeps the shared one
    assert layout.replay_block(shared, 1).max_priority.shape == (1,)


def test_the_single_seed_layout_is_the_identity():
    agent = DrQV2Agent(CFG, SPEC)
    single = SeedLayout(1, 4, 2)
    assert not single.stacked and single.wrap(agent) is agent
    assert single.priority_groups == single.eval_groups == 1
    assert single.replay_capacity(50) == 50 and single.total_envs == 4
    value, tree = jnp.arange(3.0), {"w": jnp.ones((3, 2))}
    assert single.of_seed(value, 0) is value and single.member(tree, 0) is tree
    replay = env_tagged_replay()
    assert single.replay_block(replay, 0) is replay
    stacked = SeedLayout(SEEDS, ENVS_PER_SEED, 1)
    wrapped = stacked.wrap(agent, "vmap")
    assert isinstance(wrapped, SeedStack) and wrapped.update_mode == "vmap"
    assert float(stacked.of_seed(value, 2)) == 2.0
    chex.assert_shape(stacked.member(tree, 1)["w"], (2,))
