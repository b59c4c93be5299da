"""The world-model protocol (rl/core/world_model.py): a toy deterministic world model written only
against it trains the imagination agent on rl.envs.toy; objectives compose as a list (in
Python and from Hydra), replace model losses, and bad lists fail clearly."""
import dataclasses
import pathlib

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import representations
import world_models
from rl.agents import composition
from rl.core.objective import ObjectiveBase
from representations.repo import RePoConfig
from rl import replay as replay_lib
from rl.actor_critic import ActorCriticConfig
from rl.agents.imagination import ImaginationAgent
from rl.agents.imagination.config import ImaginationConfig
from rl.core import rollout as rollout_lib
from rl.envs.toy import ToyReachEnv
from rl.core.world_model import ObserveOutput


# ---- a toy world model: encoder -> latent, (latent, action) -> next latent, reward head ------
@dataclasses.dataclass(frozen=True)
class ToyConfig:
    name: str = "toy_test"
    latent: int = 8
    units: int = 32
    loss_scales: dict = dataclasses.field(
        default_factory=lambda: {"reward": 1.0, "dynamics": 1.0})


class _Nets(nn.Module):
    latent: int
    units: int

    def setup(self):
        self.encoder = nn.Sequential([nn.Dense(self.units), nn.elu, nn.Dense(self.latent)])
        self.transition = nn.Sequential([nn.Dense(self.units), nn.elu, nn.Dense(self.latent)])
        self.reward_head = nn.Dense(1)

    def encode(self, obs):
        return jnp.tanh(self.encoder(obs.reshape(obs.shape[:-3] + (-1,)) / 255.0))

    def next(self, z, action):
        return jnp.tanh(z + self.transition(jnp.concatenate([z, action], -1)))

    def reward(self, z):
        return self.reward_head(z)[..., 0]

    def __call__(self, obs, action):
        z = self.encode(obs)
        return self.next(z, action), self.reward(z)


class ToyWorldModel:
    """Deterministic: the carry is the latent ``[N, L]``; losses ``reward`` (squared error) and
    ``dynamics`` (one-step latent prediction against the stopped next encoding)."""

    Config = ToyConfig
    discrete = False
    has_decoder = False
    loss_keys = ("reward", "dynamics")

    def __init__(self, cfg: ToyConfig, spec):
        self.cfg, self.spec = cfg, spec
        self.action_dim = int(np.prod(spec.action.shape))
        self.feat_size = cfg.latent
        self.loss_scales = dict(cfg.loss_scales)
        self.nets = _Nets(cfg.latent, cfg.units)

    def _apply(self, params, method, *args):
        return self.nets.apply({"params": params}, *args, method=method)

    def init(self, key):
        obs = jnp.zeros((1,) + tuple(self.spec.obs_shape), jnp.uint8)
        return self.nets.init(key, obs, jnp.zeros((1, self.action_dim)))["params"]

    def initial(self, batch_size):
        return jnp.zeros((batch_size, self.cfg.latent))

    def observe(self, params, carry, batch, key, unroll=1):
        del key, unroll
        z = self._apply(params, _Nets.encode, batch.obs)                            # [B, T, L]
        before = jnp.concatenate([carry[:, None], z[:, :-1]], 1)
        predicted = self._apply(params, _Nets.next, before, self.action_vector(batch.action))
        error = jnp.sum(jnp.square(predicted - jax.lax.stop_gradient(z)), -1)
        losses = {"reward": jnp.square(self.reward(params, z) - batch.reward),
                  "dynamics": jnp.where(batch.is_first, 0.0, error)}
        return z[:, -1], ObserveOutput(z, losses, {"latent_std": jnp.std(z)}, params)

    def starts(self, out):
        return out.feats.reshape(-1, self.feat_size)

    def step(self, params, carry, prev_action, obs, is_first, key):
        del carry, prev_action, is_first, key
        z = self._apply(params, _Nets.encode, obs)
        return z, z

    def imagine(self, params, start, policy, horizon, key, unroll=1, actions=None):
        step_fn = lambda z, a, k: self._apply(params, _Nets.next, z, a)
        return rollout_lib.rollout(step_fn, policy, start, horizon, key, unroll,
                                   actions=actions)

    def reward(self, params, feat):
        return self._apply(params, _Nets.reward, feat)

    def continue_prob(self, params, feat):
        return jnp.ones(feat.shape[:-1])

    def decode_uint8(self, params, feat):
        raise ValueError("the toy world model has no decoder")

    def action_vector(self, action):
        return action.astype(jnp.float32)

    def env_action(self, action_vector):
        return action_vector


class ZeroDynamics(ObjectiveBase):
    """Takes over the toy model's ``dynamics`` loss with zeros (to see the replaced map go)."""

    name = "zero_dynamics_test"
    loss_keys = ("dynamics",)
    replaces = ("dynamics",)

    @dataclasses.dataclass(frozen=True)
    class Config:
        name: str = "zero_dynamics_test"
        loss_scales: dict = dataclasses.field(default_factory=lambda: {"dynamics": 1.0})

    def __init__(self, cfg, world_model):
        self.cfg = cfg

    def loss(self, params, state, inputs, key):
        return {"dynamics": jnp.zeros(inputs.features.shape[:2])}, {}


@pytest.fixture(autouse=True, scope="module")
def _registered():
    """The test's world model and objective, in the registries only while these tests run."""
    world_models.register("toy_test", ToyWorldModel)
    representations.register("zero_dynamics_test", ZeroDynamics)
    yield
    world_models.unregister("toy_test")
    representations.unregister("zero_dynamics_test")


SMALL_AC = ActorCriticConfig(actor_layers=1, actor_units=16, critic_layers=1, critic_units=16)
CFG = ImaginationConfig(world_model=ToyConfig(), actor_critic=SMALL_AC, objectives={},
                        batch_size=4, length=8, horizon=5, model_lr=1e-2, actor_lr=1e-3,
                        critic_lr=1e-3)


def _toy_replay(agent, steps=60):
    """Steps of toy/reach acted by the agent itself (``act`` -> the model's ``step``)."""
    env = ToyReachEnv(size=16, episode_frames=20, agent_size=3, goal_size=4)
    state = agent.init(jax.random.PRNGKey(0))
    replay = replay_lib.init(env.spec, steps, 1)
    act = jax.jit(agent.act, static_argnums=6)
    obs, _ = env.reset(seed=0)
    carry, first, action, reward = agent.initial_carry(1), True, np.zeros((1, 2), np.float32), 0.0
    for t in range(steps):
        replay = replay_lib.add(replay, obs[None], action, np.float32([reward]),
                                np.ones(1, np.float32), np.array([first]), np.zeros(1, bool),
                                np.zeros(1, bool))
        action, carry = act(state, carry, jnp.asarray(obs[None]), jnp.asarray([first]),
                            jax.random.PRNGKey(100 + t), jnp.int32(t), True)
        action = np.asarray(action)
        obs, reward, terminal, truncated, _ = env.step(action[0])
        first = False
        if terminal or truncated:
            obs, _ = env.reset(seed=t)
            first = True
    return env.spec, state, replay


def test_toy_world_model_trains_the_imagination_agent_on_toy_reach():
    spec = ToyReachEnv(size=16).spec
    agent = ImaginationAgent(CFG, spec)
    assert agent.loss_scales == {"reward": 1.0, "dynamics": 1.0} and agent.replaced == ()
    spec, state0, replay = _toy_replay(agent)
    batch = agent.sample(replay, jax.random.PRNGKey(0))   # one batch: the losses must fall
    update = jax.jit(agent.update)
    state, history = state0, []
    for i in range(30):
        state, metrics = update(state, batch, jax.random.PRNGKey(i), jnp.int32(i))
        history.append(jax.device_get(metrics))
    chex.assert_tree_all_finite(state)
    for key in ("wm/loss", "wm/loss/reward", "wm/loss/dynamics", "wm/latent_std", "actor/loss",
                "critic/loss", "actor/imag_reward"):
        assert key in history[-1], key
    model = np.array([m["wm/loss"] for m in history])
    assert model[-5:].mean() < 0.5 * model[:3].mean(), model
    for name in ("actor", "critic", "world_model"):
        moved = jax.tree.map(lambda a, b: float(jnp.abs(a - b).max()), state.nets[name],
                             state0.nets[name])
        assert max(jax.tree.leaves(moved)) > 0.0, name
    # imagination stacks features and actions only, from every step of the batch
    world_model = state.nets["world_model"]
    _, out = agent.wm.observe(world_model, agent.wm.initial(4), batch, jax.random.PRNGKey(1))
    policy = lambda feat, k: agent.actor.sample(state.nets["actor"], feat, k)
    traj = agent.wm.imagine(world_model, agent.wm.starts(out), policy, 5, jax.random.PRNGKey(2))
    chex.assert_shape(traj.feats, (4 * 8, 6, CFG.world_model.latent))
    chex.assert_shape(traj.actions, (4 * 8, 5, 2))
    assert agent.report(state, batch, jax.random.PRNGKey(0)) == {}   # no decoder, no video


def test_a_replacing_objective_drops_the_model_map():
    spec = ToyReachEnv(size=16).spec
    cfg = dataclasses.replace(CFG, objectives={"zero": ZeroDynamics.Config()})
    agent = ImaginationAgent(cfg, spec)
    assert agent.replaced == ("dynamics",)
    _, state, replay = _toy_replay(agent, steps=20)
    batch = agent.sample(replay, jax.random.PRNGKey(0))
    trainable = (state.nets["world_model"], state.objective_params)
    total, (_, metrics, _) = jax.jit(agent.model_loss)(trainable, state.objective_state, batch,
                                                       jax.random.PRNGKey(1))
    assert float(metrics["loss/dynamics"]) == 0.0                     # the objective's zeros
    np.testing.assert_allclose(total, metrics["loss/reward"], rtol=1e-6)


def test_objective_list_errors_are_clear():
    spec = ToyReachEnv(size=16).spec
    with pytest.raises(ValueError, match="needs a world model with latent distributions"):
        ImaginationAgent(dataclasses.replace(CFG, objectives={"repo": RePoConfig()}), spec)
    twice = {"a": ZeroDynamics.Config(), "b": ZeroDynamics.Config()}
    with pytest.raises(ValueError, match="'a' and 'b' both replace the loss 'dynamics'"):
        ImaginationAgent(dataclasses.replace(CFG, objectives=twice), spec)
    with pytest.raises(ValueError, match="unknown objective 'nope'"):
        composition.build({"x": dataclasses.replace(ZeroDynamics.Config(), name="nope")}, None)
    with pytest.raises(ValueError, match="unknown world model 'nope'"):
        ImaginationAgent(dataclasses.replace(CFG, world_model=ToyConfig(name="nope")), spec)
    with pytest.raises(ValueError, match="must be a dict of objective configs"):
        dataclasses.replace(CFG, objectives=[RePoConfig()])


# ---- Hydra: objective=[repo,taco] and world_model= as registered groups --------------------
CONF = pathlib.Path(__file__).parents[1] / "conf"


def _compose(*overrides):
    from hydra import compose, initialize_config_dir
    from experiments import config as config_lib

    config_lib.register()
    with initialize_config_dir(str(CONF), version_base="1.3"):
        return config_lib.agent_config(compose("config", overrides=list(overrides)))


def test_objective_lists_compose_from_hydra():
    from experiments import config as config_lib
    from rl.core.types import ActionSpec, EnvSpec

    cfg = _compose("agent=imagination", "world_model=debug", "env.size=32",
                   "objective=[repo,taco]", "agent.objectives.taco.loss_scales.curl=0",
                   "agent.objectives.repo.target_kl=2.0")
    assert list(cfg.objectives) == ["repo", "taco"]
    assert cfg.objectives["repo"].target_kl == 2.0 and cfg.world_model.name == "rssm"
    agent = ImaginationAgent(cfg, EnvSpec("t", (32, 32, 3), ActionSpec.box(2)))
    assert agent.replaced == ("kl",)          # the model's free-nats KL gives way to RePo's
    assert agent.loss_scales == {"reward": 1.0, "kl": 1.0, "image": 1.0, "taco": 1.0,
                                 "taco_reward": 1.0}
    one = _compose("agent=imagination", "objective=repo")
    assert list(one.objectives) == ["repo"]
    assert list(_compose("agent=imagination").objectives) == ["reconstruction"]
    assert _compose("agent=imagination", "objective=[]").objectives == {}
    v3 = _compose("agent=imagination", "world_model=dreamerv3_like")
    assert v3.world_model.loss_scales == {"reward": 1.0, "continue": 1.0, "kl": 0.6}
    with pytest.raises(Exception, match="target_kll"):
        _compose("agent=imagination", "objective=repo", "agent.objectives.repo.target_kll=1")
    with pytest.raises(Exception, match="deterr"):
        _compose("agent=imagination", "agent.world_model.deterr=1")
    with pytest.raises(ValueError, match="unknown objective 'nope'"):
        config_lib.objective_configs({"x": {"name": "nope"}})
    with pytest.raises(ValueError, match="agent.objectives.x has no 'name'"):
        config_lib.objective_configs({"x": {"loss_scales": {}}})
