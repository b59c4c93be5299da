"""Diagnostic: the imagination agent's updates on a fixed set of random-policy toy/reach episodes
(60 x 50 frames, goal random), printing the learnable image loss (NLL minus the Gaussian
constant), the KL and the reward NLL every 100 updates.

    JAX_PLATFORMS=cpu python results/scripts/wm_only_toy.py AGENT_SIZE GOAL_SIZE MODEL_LR FREE_NATS UPDATES
    JAX_PLATFORMS=cpu python results/scripts/wm_only_toy.py 6 8 3e-3 1.0 801   # results/README.md
"""
import dataclasses, sys, time
import jax, jax.numpy as jnp, numpy as np
from rl.agents.imagination import ImaginationAgent
from rl.agents.imagination_config import preset, with_size
from rl.envs.toy import ToyReachEnv
from rl.replay.sample import Sequences

agent_size, goal_size, lr, fn = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
env = ToyReachEnv(agent_size=agent_size, goal_size=goal_size)
rng = np.random.default_rng(0)
E, T = 60, 50
obs = np.zeros((E, T, 32, 32, 3), np.uint8); act = np.zeros((E, T, 2), np.float32); rew = np.zeros((E, T), np.float32)
for e in range(E):
    obs[e, 0], _ = env.reset(e)
    for t in range(1, T):
        a = rng.uniform(-1, 1, 2).astype(np.float32)
        obs[e, t], rew[e, t], *_ = env.step(a); act[e, t] = a
base = preset("dreamer_v1")
wm = dataclasses.replace(with_size(base, "debug").world_model, cnn_depth=16, deter=64, hidden=64, stoch=16, head_units=64)
cfg = dataclasses.replace(base, world_model=wm, batch_size=16, length=16, horizon=10, model_lr=lr,
                          objective=dataclasses.replace(base.objective, free_nats=fn))
agent = ImaginationAgent(cfg, env.spec)
state = jax.jit(agent.init)(jax.random.PRNGKey(0))
update = jax.jit(agent.update, donate_argnums=0)
const = 0.5 * np.log(2 * np.pi) * 32 * 32 * 3
t0 = time.time()
for i in range(int(sys.argv[5])):
    b = rng.integers(0, E, 16); s = rng.integers(0, T - 16, 16)
    idx = s[:, None] + np.arange(16)
    first = np.zeros((16, 16), bool); first[:, 0] = s == 0
    batch = Sequences(jnp.asarray(obs[b[:, None], idx]), jnp.asarray(act[b[:, None], idx]), jnp.asarray(rew[b[:, None], idx]),
                      jnp.ones((16, 16)), jnp.asarray(first), jnp.zeros((16, 16), bool), jnp.zeros((16, 16), bool),
                      jnp.zeros(16, jnp.int32), jnp.zeros(16, jnp.int32), jnp.ones(16))
    state, m = update(state, batch, jax.random.PRNGKey(i), jnp.int32(i))
    if i % 100 == 0:
        m = jax.device_get(m)
        print(i, f"img-const={m['wm/loss/image'] - const:.2f} kl={m['wm/kl']:.2f} rew={m['wm/loss/reward']:.4f} t={time.time()-t0:.0f}s", flush=True)
