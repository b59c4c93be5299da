"""STORM (world_models/storm): tokenizer gradients and unimix, the causal mask, the key/value
cache against full recomputation, free bits on hand-made KLs, the world-model protocol, and a
short CPU learning run of the imagination agent on a discrete toy pixel task."""
import dataclasses
import json
import os
import pathlib
import subprocess
import sys

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import world_models
from rl import replay as replay_lib
from rl.actor_critic import ActorCriticConfig
from rl.agents.imagination import ImaginationAgent
from rl.agents.imagination.config import ImaginationConfig
from rl.core.batches import Sequences
from rl.core.types import ActionSpec, EnvSpec
from rl.envs.toy import ToyReachEnv
from world_models.storm import StormWorldModel, config as storm_config, context, losses
from world_models.storm import tokenizer
from world_models.storm.transformer import Transformer, cache_from_context, causal_mask

SPEC = EnvSpec("toy/reach_discrete", (32, 32, 3), ActionSpec.categorical(5))
CFG = storm_config.debug()
B, T = 3, 10


@pytest.fixture(scope="module")
def wm():
    return StormWorldModel(CFG, SPEC)


@pytest.fixture(scope="module")
def params(wm):
    return wm.init(jax.random.PRNGKey(0))


def _batch(seed=0, first_at=(4,), length=T):
    rng = np.random.default_rng(seed)
    first = np.zeros((B, length), bool)
    first[:, 0] = True
    for t in first_at:
        first[1, t] = True
    terminal = np.zeros((B, length), bool)
    terminal[0, 6] = True
    return Sequences(
        obs=jnp.asarray(rng.integers(0, 256, (B, length, 32, 32, 3)), jnp.uint8),
        action=jnp.asarray(rng.integers(0, 5, (B, length)), jnp.int32),
        reward=jnp.asarray(rng.normal(size=(B, length)), jnp.float32),
        discount=jnp.ones((B, length)), is_first=jnp.asarray(first),
        is_last=jnp.zeros((B, length), bool), is_terminal=jnp.asarray(terminal),
        env_index=jnp.zeros(B, jnp.int32), slot=jnp.zeros(B, jnp.int32), prob=jnp.ones(B))


def _random_policy(feat, key):
    return jax.nn.one_hot(jax.random.randint(key, feat.shape[:1], 0, 5), 5), {}


# ---- tokenizer -------------------------------------------------------------------------------
def test_straight_through_sample_passes_gradients_to_the_encoder(wm, params):
    obs = _batch().obs[:, 0]
    weights = jax.random.normal(jax.random.PRNGKey(1), (B, wm.latent_size))

    def loss(encoder):
        logits = wm.posterior({**params, "encoder": encoder}, obs)
        return jnp.sum(tokenizer.sample(logits, jax.random.PRNGKey(2)) * weights)

    value, grads = jax.value_and_grad(loss)(params["encoder"])
    sample = tokenizer.sample(wm.posterior(params, obs), jax.random.PRNGKey(2))
    groups = sample.reshape(B, CFG.stoch, CFG.classes)
    np.testing.assert_allclose(groups.sum(-1), 1.0, atol=1e-5)      # one-hot forward values
    np.testing.assert_allclose(jnp.max(groups, -1), 1.0, atol=1e-5)
    norms = jax.tree.map(lambda g: float(jnp.abs(g).max()), grads)
    assert all(n > 0.0 for n in jax.tree.leaves(norms)), norms       # every encoder layer
    assert np.isfinite(float(value))


def test_unimix_keeps_one_percent_over_classes_on_every_class(wm, params):
    raw = jnp.concatenate([jnp.full((1, 3), 1e4), jnp.full((1, 5), -1e4)], -1)
    probs = jnp.exp(tokenizer.mixed_logits(raw, 1, 8, 0.01))
    np.testing.assert_allclose(probs[0, 0, 3:], 0.01 / 8, rtol=1e-5)
    np.testing.assert_allclose(probs.sum(-1), 1.0, rtol=1e-6)
    post = jnp.exp(wm.posterior(params, _batch().obs * 0 + 255))
    prior = jnp.exp(wm.prior(params, 100.0 * jax.random.normal(jax.random.PRNGKey(0),
                                                               (4, CFG.width))))
    chex.assert_shape(post, (B, T, CFG.stoch, CFG.classes))
    for p in (post, prior):
        assert float(p.min()) >= 0.01 / CFG.classes * (1 - 1e-4)
        np.testing.assert_allclose(p.sum(-1), 1.0, rtol=1e-5)


# ---- transformer -----------------------------------------------------------------------------
def _transformer(dropout=0.0):
    net = Transformer(layers=2, width=16, heads=2, ffn=32, max_len=16, dropout=dropout)
    tokens = jax.random.normal(jax.random.PRNGKey(0), (2, 7, 1, 6))
    variables = net.init(jax.random.PRNGKey(1), tokens, jnp.zeros((2, 7), jnp.int32),
                         causal_mask(None, 7, 2))
    return net, variables, tokens


def test_causal_mask_keeps_the_past_blind_to_the_future(wm, params):
    net, variables, tokens = _transformer()
    positions = jnp.broadcast_to(jnp.arange(7), (2, 7))
    out, _ = net.apply(variables, tokens, positions, causal_mask(None, 7, 2))
    changed = tokens.at[:, 4:].add(3.0)
    out2, _ = net.apply(variables, changed, positions, causal_mask(None, 7, 2))
    np.testing.assert_allclose(out[:, :4], out2[:, :4], atol=1e-6)
    assert float(jnp.abs(out[:, 4:] - out2[:, 4:]).max()) > 1e-3
    # the whole model (dropout on, same key): features up to t depend on frames <= t only
    batch = _batch()
    _, base = wm.observe(params, wm.initial(B), batch, jax.random.PRNGKey(3))
    later = batch.replace(obs=batch.obs.at[:, 6:].set(255 - batch.obs[:, 6:]),
                          action=batch.action.at[:, 7:].set((batch.action[:, 7:] + 1) % 5))
    _, out_later = wm.observe(params, wm.initial(B), later, jax.random.PRNGKey(3))
    np.testing.assert_allclose(base.feats[:, :6], out_later.feats[:, :6], atol=1e-5)
    np.testing.assert_allclose(base.prior_logits[:, :5], out_later.prior_logits[:, :5],
                               atol=1e-5)
    assert float(jnp.abs(base.feats[:, 6:] - out_later.feats[:, 6:]).max()) > 1e-3


def test_episode_mask_stops_attention_at_an_episode_start(wm, params):
    batch = _batch(first_at=(4,))
    _, base = wm.observe(params, wm.initial(B), batch, jax.random.PRNGKey(3))
    earlier = batch.replace(obs=batch.obs.at[1, :4].set(0))      # the episode before frame 4
    _, out = wm.observe(params, wm.initial(B), earlier, jax.random.PRNGKey(3))
    np.testing.assert_allclose(base.feats[1, 4:], out.feats[1, 4:], atol=1e-5)
    np.testing.assert_allclose(base.feats[1, 4, wm.latent_size:], 0.0)   # h_{-1} = 0
    crossing = StormWorldModel(dataclasses.replace(CFG, episode_mask=False), SPEC)
    _, a = crossing.observe(params, wm.initial(B), batch, jax.random.PRNGKey(3))
    _, b = crossing.observe(params, wm.initial(B), earlier, jax.random.PRNGKey(3))
    assert float(jnp.abs(a.feats[1, 5:] - b.feats[1, 5:]).max()) > 1e-3


def test_kv_cache_steps_equal_full_context_recomputation():
    net, variables, tokens = _transformer()
    valid = jnp.array([[True] * 4, [False, False, True, True]])        # a left-padded context
    mask = causal_mask(None, 4, 2) & valid[:, None, :]
    out, kvs = net.apply(variables, tokens[:, :4], context.positions(valid), mask)
    cache = cache_from_context(kvs, valid, extra=3)
    stepped = []
    for t in range(4, 7):
        h, cache = net.apply(variables, tokens[:, t], cache, method=Transformer.step)
        stepped.append(h)
    stepped = jnp.stack(stepped, 1)                                      # [2, 3, 1, D]
    # recomputation over the valid tokens only, from position 0
    for row, start in ((0, 0), (1, 2)):
        seq = tokens[row:row + 1, start:]
        length = seq.shape[1]
        full, _ = net.apply(variables, seq, jnp.arange(length)[None],
                            causal_mask(None, length, 1))
        np.testing.assert_allclose(full[0, 4 - start:], stepped[row], atol=1e-5)
        np.testing.assert_allclose(full[0, :4 - start], out[row, start:], atol=1e-5)
    assert int(cache.index) == 7 and cache.pos.tolist() == [7, 5]


def test_imagination_with_the_cache_equals_recomputing_the_whole_sequence(wm, params):
    _, out = wm.observe(params, wm.initial(B), _batch(first_at=()), jax.random.PRNGKey(1))
    last_token = jnp.arange(B) * (T - 1) + T - 2                        # each sequence's last
    start = jax.tree.map(lambda x: x[last_token], wm.starts(out))
    horizon = 5
    traj = wm.imagine(params, start, _random_policy, horizon, jax.random.PRNGKey(2))
    chex.assert_shape(traj.feats, (B, horizon + 1, wm.feat_size))
    z, h = traj.feats[..., :wm.latent_size], traj.feats[..., wm.latent_size:]
    tokens = jnp.concatenate([start.latents, start.actions], -1)
    dreamt = jnp.concatenate([z[:, :-1], traj.actions], -1)
    seq = jnp.concatenate([tokens, dreamt], 1)[:, :, None]              # context + imagined
    length = seq.shape[1]
    full, _ = wm.transformer.apply({"params": params["transformer"]}, seq,
                                   jnp.broadcast_to(jnp.arange(length), (B, length)),
                                   causal_mask(None, length, B))
    context_len = tokens.shape[1]
    np.testing.assert_allclose(h, full[:, context_len - 1:, 0], atol=2e-5)


# ---- losses ----------------------------------------------------------------------------------
def _logits(p):
    return jnp.log(jnp.asarray(p, jnp.float32))[:, :, None, :]          # [B, T-1, 1 group, K]


def test_free_bits_apply_once_to_the_batch_mean_kl():
    q = _logits([[[0.5, 0.5], [0.5, 0.5]]])
    p = _logits([[[0.9, 0.1], [0.5, 0.5]]])
    one = 0.5 * np.log(0.5 / 0.9) + 0.5 * np.log(0.5 / 0.1)               # 0.5108 nats
    valid = jnp.ones((1, 2))
    maps = losses.kl_maps(q, p, valid, free=1.0, mode="batch")
    chex.assert_shape(maps["dyn"], (1, 3))
    assert float(jnp.mean(maps["dyn"])) == pytest.approx(1.0)           # max(1, 0.255)
    grad = jax.grad(lambda prior: jnp.mean(losses.kl_maps(q, prior, valid, 1.0, "batch")["dyn"]))
    assert float(jnp.abs(grad(p)).max()) == 0.0                         # clipped: no gradient
    unclipped = losses.kl_maps(q, p, valid, free=0.2, mode="batch")
    assert float(jnp.mean(unclipped["rep"])) == pytest.approx(one / 2, rel=1e-5)
    # batch mode: a batch mean above the threshold trains every step, also the small ones
    q2 = _logits([[[0.5, 0.5], [0.5, 0.5]]])
    p2 = _logits([[[0.999, 0.001], [0.6, 0.4]]])          # KLs 2.76 and 0.02
    mean = lambda mode: lambda prior: jnp.mean(losses.kl_maps(q2, prior, valid, 1.0, mode)["dyn"])
    g_batch, g_step = jax.grad(mean("batch"))(p2), jax.grad(mean("step"))(p2)
    assert float(jnp.abs(g_batch[0, 1]).max()) > 0.0 and float(jnp.abs(g_step[0, 1]).max()) == 0.0
    # masked frames count in neither the mean nor the gradient
    masked = losses.kl_maps(q, p, jnp.array([[1.0, 0.0]]), free=0.0, mode="batch")
    assert float(jnp.mean(masked["dyn"])) == pytest.approx(one, rel=1e-5)
    np.testing.assert_allclose(masked["dyn"][0, 2], 0.0)
    # dyn trains only the prior, rep only the posterior
    both = lambda post, prior, key: jnp.mean(losses.kl_maps(post, prior, valid, 0.0, "batch")[key])
    assert float(jnp.abs(jax.grad(both, 0)(q, p, "dyn")).max()) == 0.0
    assert float(jnp.abs(jax.grad(both, 1)(q, p, "rep")).max()) == 0.0


# ---- the protocol ----------------------------------------------------------------------------
def test_protocol_shapes_and_dtypes(wm, params):
    assert "storm" in world_models.names()
    assert world_models.get("storm") is StormWorldModel and wm.feat_size == 64 + 32
    batch = _batch()
    last, out = jax.jit(wm.observe)(params, wm.initial(B), batch, jax.random.PRNGKey(1))
    assert set(out.losses) == set(wm.loss_keys) == set(wm.loss_scales)
    for value in out.losses.values():
        chex.assert_shape(value, (B, T))
        chex.assert_type(value, jnp.float32)
    chex.assert_tree_all_finite(out.losses)
    chex.assert_shape(out.feats, (B, T, wm.feat_size))
    np.testing.assert_allclose(out.losses["dyn"][:, 0], 0.0)            # no prior for frame 0
    assert jax.tree.structure(last) == jax.tree.structure(wm.initial(B))
    chex.assert_trees_all_equal_shapes(last, wm.initial(B))
    starts = jax.lax.stop_gradient(wm.starts(out))
    chex.assert_shape(starts.latents, (B * (T - 1), CFG.context, wm.latent_size))
    chex.assert_shape(starts.valid, (B * (T - 1), CFG.context))
    traj = jax.jit(lambda s, k: wm.imagine(params, s, _random_policy, 4, k))(
        starts, jax.random.PRNGKey(2))
    chex.assert_shape(traj.feats, (B * (T - 1), 5, wm.feat_size))
    chex.assert_shape(traj.actions, (B * (T - 1), 4, 5))
    chex.assert_type(traj.feats, jnp.float32)
    chex.assert_shape([wm.reward(params, traj.feats), wm.continue_prob(params, traj.feats)],
                      (B * (T - 1), 5))
    cont = wm.continue_prob(params, traj.feats)
    assert float(cont.min()) >= 0.0 and float(cont.max()) <= 1.0
    hard = StormWorldModel(dataclasses.replace(CFG, hard_termination=True), SPEC)
    assert set(np.unique(np.asarray(hard.continue_prob(params, traj.feats)))) <= {0.0, 1.0}
    video = wm.decode_uint8(params, out.feats)
    chex.assert_shape(video, (B, T, 32, 32, 3))
    chex.assert_type(video, jnp.uint8)
    # acting: the window fills step by step and clears at an episode start
    carry, action = wm.initial(B), jnp.zeros((B, 5))
    step = jax.jit(wm.step)
    for t in range(CFG.act_context + 2):
        first = jnp.array([t == 0, t == 0, t in (0, 5)])
        carry, feat = step(params, carry, action, batch.obs[:, t % T], first,
                           jax.random.PRNGKey(t))
        chex.assert_shape(feat, (B, wm.feat_size))
        action = jax.nn.one_hot(jnp.full((B,), t % 5), 5)
    assert carry.valid.sum(1).tolist() == [CFG.act_context, CFG.act_context, 4]   # 6..9
    # the carry after observe and after acting both start imagination under given actions
    given = jax.nn.one_hot(jnp.zeros((B, 3), jnp.int32), 5)
    for start in (last, carry):
        traj = wm.imagine(params, start, None, 3, jax.random.PRNGKey(4), actions=given)
        chex.assert_shape(traj.feats, (B, 4, wm.feat_size))
        np.testing.assert_allclose(traj.feats[:, 0, :wm.latent_size], start.latent)


def test_bad_configs_are_refused_clearly():
    with pytest.raises(ValueError, match="act_latent"):
        storm_config.debug(act_latent="lagged")
    with pytest.raises(ValueError, match="divisible"):
        storm_config.debug(width=30, heads=4)
    with pytest.raises(ValueError, match="loss_scales needs exactly"):
        storm_config.debug(loss_scales={"image": 1.0})
    with pytest.raises(ValueError, match="power of two"):
        StormWorldModel(CFG, EnvSpec("x", (48, 48, 3), ActionSpec.categorical(3)))
    wm = StormWorldModel(CFG, SPEC)
    with pytest.raises(ValueError, match="max_len"):
        wm.observe(wm.init(jax.random.PRNGKey(0)), wm.initial(B), _batch(length=40),
                   jax.random.PRNGKey(0))


# ---- configs and the agent ------------------------------------------------------------------
def _compose(*overrides):
    from hydra import compose, initialize_config_dir
    from experiments import config as config_lib

    config_lib.register()
    conf = pathlib.Path(__file__).resolve().parents[1] / "conf"
    with initialize_config_dir(str(conf), version_base="1.3"):
        return config_lib.agent_config(compose("config", overrides=list(overrides)))


def test_presets_compose_into_the_imagination_agent():
    cfg = _compose("experiment=storm_atari100k")
    wm_cfg = cfg.world_model
    assert isinstance(wm_cfg, storm_config.StormConfig) and cfg.objectives == {}
    assert (wm_cfg.width, wm_cfg.layers, wm_cfg.heads, wm_cfg.max_len, wm_cfg.context) == \
        (512, 2, 8, 64, 8)
    assert (wm_cfg.act_latent, wm_cfg.episode_mask, wm_cfg.hard_termination) == \
        ("posterior", True, False)
    assert (cfg.lambda_bootstrap, cfg.actor_critic.return_norm_method, wm_cfg.free_nats_mode,
            cfg.horizon, cfg.batch_size * (cfg.length - 1)) == ("same", "kth", "batch", 16, 1024)
    official = _compose("experiment=storm_atari100k_official").world_model
    assert (official.act_latent, official.episode_mask, official.hard_termination) == \
        ("prior", False, True)
    agent = ImaginationAgent(cfg, EnvSpec("atari/Pong", (64, 64, 3), ActionSpec.categorical(6)))
    assert agent.wm.feat_size == 32 * 32 + 512 and agent.loss_scales == wm_cfg.loss_scales
    debug = _compose("agent=imagination", "world_model=storm_debug", "objective=[]").world_model
    assert debug == storm_config.debug()
    with pytest.raises(ValueError, match="the loss 'image' comes from both"):   # STORM reconstructs
        ImaginationAgent(_compose("agent=imagination", "world_model=storm_debug"), SPEC)


def test_agent_report_video_runs_open_loop_past_the_window():
    ac = ActorCriticConfig(actor_layers=1, actor_units=16, critic_layers=1, critic_units=16)
    cfg = ImaginationConfig(world_model=CFG, actor_critic=ac, objectives={}, batch_size=B,
                            length=T, horizon=4, return_indexing="v3")
    agent = ImaginationAgent(cfg, SPEC)
    state = agent.init(jax.random.PRNGKey(0))
    video = jax.jit(agent.report, static_argnums=3)(state, _batch(), jax.random.PRNGKey(1), 2)
    chex.assert_shape(video["openloop"], (T, 2 * 32, 3 * 32, 3))
    chex.assert_type(video["openloop"], jnp.uint8)


# ---- learning --------------------------------------------------------------------------------
def _learn(updates: int = 300, seed: int = 0, steps: int = 400) -> dict:
    """STORM (debug sizes) + the imagination agent with STORM's actor-critic switches, trained
    from 400 random steps of toy/reach_discrete at 16x16 (6x6 agent and goal, goal fixed at
    the centre, 20-step episodes); returns the losses at the start and the end and the greedy
    return against a random policy's over 10 episodes."""
    env = ToyReachEnv("reach_discrete", size=16, agent_size=6, goal_size=6, fixed_goal=True,
                      episode_frames=20, speed=2.0)
    # finer reward bins and a larger reward weight: the rewards only span [0.4, 1]
    wm_cfg = storm_config.debug(dropout=0.0, bin_range=5.0, loss_scales={
        "image": 1.0, "reward": 10.0, "termination": 1.0, "dyn": 0.5, "rep": 0.1})
    ac = ActorCriticConfig(actor_layers=1, actor_units=32, critic_layers=1, critic_units=32,
                           act="relu", norm="layer", actor_grad="reinforce", actor_entropy=3e-4,
                           critic_head="twohot", slow_critic_reg=1.0,
                           slow_critic_reg_target="return", return_norm=True,
                           return_norm_method="kth", weight_by_gamma=False)
    cfg = ImaginationConfig(world_model=wm_cfg, actor_critic=ac, objectives={}, batch_size=8,
                            length=17, horizon=8, gamma=0.9, return_indexing="v3",
                            lambda_bootstrap="same", model_lr=3e-3, actor_lr=3e-3,
                            critic_lr=3e-3, model_grad_clip=1000.0, expl_noise=0.0)
    agent = ImaginationAgent(cfg, env.spec)
    state = jax.jit(agent.init)(jax.random.PRNGKey(seed))
    replay = replay_lib.init(env.spec, steps, 1)
    add = jax.jit(replay_lib.add, donate_argnums=0)
    rng = np.random.default_rng(seed)
    obs, _ = env.reset(seed=seed)
    first, reward, action = True, 0.0, np.zeros(1, np.int32)
    for t in range(steps):
        replay = add(replay, obs[None], action, np.float32([reward]), np.ones(1, np.float32),
                     np.array([first]), np.zeros(1, bool), np.zeros(1, bool))
        action = rng.integers(0, 5, (1,)).astype(np.int32)
        obs, reward, terminal, truncated, _ = env.step(action[0])
        first = terminal or truncated
        if first:
            obs, _ = env.reset(seed=seed * 1000 + t + 1)
    update, sample = jax.jit(agent.update, donate_argnums=0), jax.jit(agent.sample)
    history = []
    for i in range(updates):
        batch = sample(replay, jax.random.PRNGKey(1000 + i))
        state, metrics = update(state, batch, jax.random.PRNGKey(i), jnp.int32(i))
        history.append(metrics)
    history = jax.device_get(history)
    act = jax.jit(agent.act, static_argnums=6)

    def episode_return(episode: int, greedy: bool) -> float:
        obs, _ = env.reset(seed=10_000 + episode)
        carry, total = agent.initial_carry(1), 0.0
        for t in range(20):
            action, carry = act(state, carry, jnp.asarray(obs[None]), jnp.asarray([t == 0]),
                                jax.random.PRNGKey(t), jnp.int32(0), False)
            action = int(np.asarray(action)[0]) if greedy else int(rng.integers(0, 5))
            obs, reward, *_ = env.step(action)
            total += reward
        return total

    mean = lambda key, part: float(np.mean([h[f"wm/loss/{key}"] for h in history[part]]))
    result = {key: [mean(key, slice(0, 3)), mean(key, slice(-10, None))]
              for key in ("image", "reward", "dyn", "rep", "termination")}
    result["greedy"] = float(np.mean([episode_return(e, True) for e in range(10)]))
    result["random"] = float(np.mean([episode_return(e, False) for e in range(10)]))
    return result


@pytest.mark.slow(minutes=0.75)
def test_storm_learns_toy_reach_discrete():
    """300 updates from random data, in a subprocess without the cheap-compile XLA flags (27 s
    on 2 CPU cores, 11 s with a warm compilation cache). Seeds 0-4 went: image loss 108-132 ->
    5.3-6.7 (a model that misses the agent sprite stays near 13), reward loss 5.46 -> 1.05-1.20,
    greedy return 16.2-17.4 against a random policy's 11.6-12.6 (walking to the goal: ~18).
    Without the straight-through gradient (samples detached) seed 0 gave image 115 -> 23.6,
    reward 5.46 -> 2.17 and greedy 9.8: all three checks fail."""
    root = pathlib.Path(__file__).resolve().parents[1]
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    env["PYTHONPATH"] = os.pathsep.join([str(root)] + [p for p in [env.get("PYTHONPATH")] if p])
    done = subprocess.run([sys.executable, __file__, "300", "0"], env=env, cwd=root,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    (image_0, image_1), (reward_0, reward_1) = result["image"], result["reward"]
    assert image_1 < 0.08 * image_0, result
    assert reward_1 < 0.3 * reward_0, result
    assert result["greedy"] > result["random"] + 3.0, result


if __name__ == "__main__":   # the learning run of test_storm_learns_toy_reach_discrete
    print(json.dumps(_learn(int(sys.argv[1]), int(sys.argv[2]))))
