"""Every agent state names its networks the same way (``rl.agents.base``): ``nets`` and
``opt_states`` keyed as documented, and the generic helpers of ``rl.modules.perturb`` on them (on
a tiny pytree by hand, and through the toy module's ``after_update`` on every agent)."""
import dataclasses

import chex
import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from representations.taco import TacoConfig
from rl.agents.drqv2 import DrQV2Agent, DrQV2Config
from rl.agents.imagination import ImaginationAgent
from rl.agents.imagination.config import preset
from rl.agents.rainbow import RainbowAgent
from rl.modules import ToyConfig, perturb_nets, reset_opt_states

import test_drqv2
import test_imagination
import test_rainbow

# agent -> (nets, opt_states) as documented in rl/agents/base.py
NAMES = {
    "drqv2": ({"encoder", "actor", "critic", "critic_target"}, {"encoder", "actor", "critic"}),
    "drqv2_taco": ({"encoder", "actor", "critic", "critic_target", "action_encoder"},
                   {"encoder", "actor", "critic", "action_encoder"}),
    "imagination": ({"world_model", "actor", "critic", "slow_critic"},
                    {"world_model", "actor", "critic"}),
    "rainbow": ({"online", "target"}, {"online"}),
}


def _agent(name: str, modules=None):
    if name == "drqv2":
        return DrQV2Agent(DrQV2Config.tiny(modules=modules or {}), test_drqv2.SPEC)
    if name == "drqv2_taco":
        taco = TacoConfig(horizon=3, feature_dim=6, hidden_dim=16)
        return DrQV2Agent(DrQV2Config.tiny(objectives={"taco": taco}), test_drqv2.SPEC)
    if name == "imagination":
        return ImaginationAgent(dataclasses.replace(preset("debug"), modules=modules or {}),
                                test_imagination.SPEC)
    return RainbowAgent(dataclasses.replace(test_rainbow.PLAIN, modules=modules or {}),
                        test_rainbow.SPEC)


@pytest.mark.parametrize("name", sorted(NAMES))
def test_nets_and_opt_states_are_named_as_documented(name):
    agent = _agent(name)
    state = agent.init(jax.random.PRNGKey(0))
    nets, opt_states = NAMES[name]
    assert set(state.nets) == nets
    assert set(state.opt_states) == opt_states
    assert set(state.opt_states) <= set(state.nets)          # targets have no optimiser
    # the host's pieces a module uses are keyed the same way
    assert set(agent.optimizers) == opt_states
    assert set(agent.opt_params(state)) == opt_states
    fresh = jax.eval_shape(agent.init_params, jax.random.PRNGKey(1))
    assert set(fresh) <= nets and not set(fresh) & {"critic_target", "slow_critic", "target"}
    for net in fresh:
        chex.assert_trees_all_equal_shapes_and_dtypes(fresh[net], state.nets[net])
    for opt in opt_states:
        chex.assert_trees_all_equal_shapes_and_dtypes(
            jax.eval_shape(agent.optimizers[opt].init, agent.opt_params(state)[opt]),
            state.opt_states[opt])


# ---------------------------------------------------------------- the helpers by hand
@flax.struct.dataclass
class TinyState:
    nets: dict
    opt_states: dict


def test_perturb_nets_and_reset_opt_states_on_a_tiny_pytree():
    opt = optax.adam(0.1)
    nets = {"a": {"w": jnp.full((2,), 4.0)}, "b": {"w": jnp.ones(3)}, "a_ema": {"w": jnp.ones(2)}}
    state = TinyState(nets=nets, opt_states={"a": opt.init(nets["a"]), "b": opt.init(nets["b"])})
    _, stepped = opt.update({"w": jnp.ones(2)}, state.opt_states["a"])   # count 1, moments != 0
    state = state.replace(opt_states={**state.opt_states, "a": stepped})
    fresh = {"a": {"w": jnp.zeros(2)}, "b": {"w": jnp.full((3,), 2.0)}}

    moved = perturb_nets(state, fresh, 0.25, ["a"])
    np.testing.assert_allclose(moved.nets["a"]["w"], 0.25 * 4.0)
    chex.assert_trees_all_equal(moved.nets["b"], nets["b"])          # not named: kept
    chex.assert_trees_all_equal(moved.nets["a_ema"], nets["a_ema"])
    chex.assert_trees_all_equal(moved.opt_states, state.opt_states)
    both = perturb_nets(state, fresh, 0.5, ("a", "b"))
    np.testing.assert_allclose(both.nets["b"]["w"], 1.5)
    # a ``where`` that picks no leaf keeps them all
    kept = perturb_nets(state, fresh, 0.0, "a", where=lambda path, leaf: False)
    chex.assert_trees_all_equal(kept.nets, state.nets)

    reset = reset_opt_states(state, {"a": opt, "b": opt}, state.nets, "a")
    assert int(reset.opt_states["a"][0].count) == 0
    chex.assert_trees_all_equal(reset.opt_states["a"], opt.init(nets["a"]))
    chex.assert_trees_all_equal(reset.opt_states["b"], state.opt_states["b"])
    chex.assert_trees_all_equal(reset.nets, state.nets)
    with pytest.raises(ValueError, match=r"no nets named \['c'\]; this agent has \['a', 'a_ema'"):
        perturb_nets(state, fresh, 0.5, ["c"])
    with pytest.raises(ValueError, match=r"no opt_states named \['a_ema'\]"):
        reset_opt_states(state, {"a": opt}, state.nets, ["a_ema"])


# ---------------------------------------------------------------- the toy module, every agent
def _batch(name: str, agent):
    if name == "drqv2":
        return test_drqv2.make_batch(1, agent.cfg)
    if name == "imagination":
        return test_imagination._fixed_batch(agent.cfg.batch_size, agent.cfg.length, False)
    return agent.sample(test_rainbow.make_replay(), jax.random.PRNGKey(5))


@pytest.mark.parametrize("name,names", [("drqv2", ("actor", "critic")),
                                        ("imagination", ("actor", "critic")),
                                        ("rainbow", ("online",))])
def test_toy_after_update_perturbs_and_resets_by_the_generic_names(name, names):
    """alpha 0: the named nets become the host's fresh ``init_params`` of the module's key; the
    named optimiser states are fresh (all zeros for Adam), the others have stepped."""
    agent = _agent(name, {"toy": ToyConfig(perturb=names, alpha=0.0, reset=names)})
    state0 = agent.init(jax.random.PRNGKey(0))
    key = jax.random.PRNGKey(2)
    state1, _ = jax.jit(agent.update)(state0, _batch(name, agent), key, jnp.int32(1000))
    module_key = jax.random.split(jax.random.fold_in(key, 1), 1)[0]   # Modules.after_update
    fresh = jax.jit(agent.init_params)(module_key)
    for net in names:
        chex.assert_trees_all_close(state1.nets[net], fresh[net], rtol=1e-6, atol=1e-6)
        assert all(not np.any(np.asarray(x)) for x in jax.tree.leaves(state1.opt_states[net]))
    for opt in set(state1.opt_states) - set(names):
        assert any(np.any(np.asarray(x)) for x in jax.tree.leaves(state1.opt_states[opt])), opt
    assert int(state1.modules["toy"]["updates"]) == 1


def test_toy_refuses_unknown_names_at_init():
    with pytest.raises(ValueError, match=r"no trained nets named \['critic_target'\]; this "
                                         r"agent has \['actor', 'critic', 'encoder'\]"):
        _agent("drqv2", {"toy": ToyConfig(perturb=("critic_target",))}).init(
            jax.random.PRNGKey(0))
    with pytest.raises(ValueError, match=r"no opt_states named \['actor'\]; this agent has "
                                         r"\['online'\]"):
        _agent("rainbow", {"toy": ToyConfig(reset=("actor",))}).init(jax.random.PRNGKey(0))
