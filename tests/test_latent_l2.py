"""latent_l2 (the worked example of docs/ARCHITECTURE.md): the loss by hand, and the objective
switched on from the config for every agent."""
import pathlib

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hydra import compose, initialize_config_dir

import representations
from experiments import config as config_lib
from rl.core.objective import ObjectiveInputs

config_lib.register()


def test_latent_l2_is_the_squared_norm_per_sample():
    cls = representations.get("latent_l2")
    obj = cls(cls.Config())
    for feats, want in ((jnp.array([[3.0, 4.0], [1.0, 0.0]]), [25.0, 1.0]),        # [B, F]
                        (jnp.array([[[3.0, 4.0], [0.0, 2.0]]]), [[25.0, 4.0]]),     # [B, T, F]
                        (jnp.ones((2, 2, 2, 3)), [12.0, 12.0])):                    # [B, h, w, c]
        losses, metrics = obj.loss({}, {}, ObjectiveInputs(batch=None, features=feats),
                                   jax.random.PRNGKey(0))
        chex.assert_shape(losses["latent_l2"], feats.shape[:1] if feats.ndim == 4
                          else feats.shape[:-1])
        chex.assert_type(losses["latent_l2"], jnp.float32)
        np.testing.assert_allclose(losses["latent_l2"], want)
    np.testing.assert_allclose(metrics["norm"], np.sqrt(12.0), rtol=1e-6)
    total, _ = representations.weigh({"latent_l2": jnp.array([[25.0, 4.0]])}, {"latent_l2": 0.5})
    np.testing.assert_allclose(total, 0.5 * (25.0 + 4.0) / 2)


@pytest.mark.parametrize("agent", ["drqv2", "rainbow", "imagination"])
def test_latent_l2_composes_on_every_agent(agent):
    conf = pathlib.Path(__file__).parents[1] / "conf"
    extra = ["objective=[reconstruction,latent_l2]"] if agent == "imagination" \
        else ["objective=[latent_l2]"]
    with initialize_config_dir(str(conf), version_base="1.3"):
        cfg = compose("config", overrides=[f"agent={agent}", *extra,
                                           "agent.objectives.latent_l2.loss_scales.latent_l2=0.1"])
    agent_cfg = config_lib.agent_config(cfg)
    assert agent_cfg.objectives["latent_l2"].loss_scales == {"latent_l2": 0.1}
    assert agent_cfg.objectives["latent_l2"].name == "latent_l2"


def test_latent_l2_trains_drqv2_encoder():
    """One DrQ-v2 update with the objective joined to the critic step: its metrics are logged
    and its gradient changes the encoder update (scale 0 gives the plain update)."""
    import test_drqv2
    from rl.agents.drqv2 import DrQV2Agent, DrQV2Config

    def encoder_after(scale):
        objective = representations.get("latent_l2").Config(loss_scales={"latent_l2": scale})
        cfg = DrQV2Config.tiny(objectives={"latent_l2": objective})
        agent = DrQV2Agent(cfg, test_drqv2.SPEC)
        state, metrics = jax.jit(agent.update)(agent.init(jax.random.PRNGKey(0)),
                                               test_drqv2.make_batch(1, cfg),
                                               jax.random.PRNGKey(2), jnp.asarray(1000))
        return state.nets["encoder"], metrics

    plain, _ = encoder_after(0.0)
    pulled, metrics = encoder_after(10.0)
    assert float(metrics["latent_l2/loss/latent_l2"]) > 0.0
    diff = jax.tree.map(lambda a, b: float(jnp.max(jnp.abs(a - b))), plain, pulled)
    assert max(jax.tree.leaves(diff)) > 0.0
