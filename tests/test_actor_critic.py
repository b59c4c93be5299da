import distrax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rl import actor_critic as ac
from rl.core import heads

FEAT = 6


def _feat(n=4, seed=0):
    return jax.random.normal(jax.random.PRNGKey(seed), (n, FEAT))


def test_reinforce_gradient_hand_case():
    def loss(logits, returns, baseline, scale=1.0):
        log_prob = jax.nn.log_softmax(logits)[0]                 # action 0 was taken
        out, _ = ac.actor_loss_reinforce(returns, baseline, log_prob, jnp.zeros(()),
                                         jnp.ones(()), 0.0, scale)
        return out

    logits = jnp.zeros(2)
    # advantage 3 - 1 = 2; d(-2 log pi_0)/d logits = -2 (onehot_0 - pi) = [-1, 1]
    grads = jax.grad(loss, argnums=(0, 1, 2))(logits, 3.0, 1.0)
    np.testing.assert_allclose(grads[0], [-1.0, 1.0], rtol=1e-6)
    assert grads[1] == 0.0 and grads[2] == 0.0                # the advantage is a constant
    np.testing.assert_allclose(jax.grad(loss)(logits, 3.0, 1.0, 2.0), [-0.5, 0.5], rtol=1e-6)
    np.testing.assert_allclose(jax.grad(loss)(logits, -1.0, 1.0), [1.0, -1.0], rtol=1e-6)
    np.testing.assert_allclose(loss(logits, 3.0, 1.0), -2.0 * np.log(0.5), rtol=1e-6)


def _init(module, seed=0):
    return jax.jit(module.init, static_argnums=1)(jax.random.PRNGKey(seed), FEAT)


def test_reinforce_step_makes_the_good_action_likelier():
    cfg = ac.ActorCriticConfig(actor_layers=1, actor_units=8)
    actor = ac.Actor(cfg, action_dim=3, discrete=True)
    params = _init(actor)
    feat = _feat()
    taken = jax.nn.one_hot(jnp.array([1, 1, 1, 1]), 3)

    def loss(params):
        log_prob = actor.dist(params, feat).log_prob(taken)
        out, _ = ac.actor_loss_reinforce(jnp.full(4, 2.0), jnp.zeros(4), log_prob,
                                         jnp.zeros(4), jnp.ones(4), 0.0)
        return out.mean()

    @jax.jit
    def probs_before_after(params):
        prob = lambda p: jax.nn.softmax(actor._raw(p, feat))[:, 1]
        stepped = jax.tree.map(lambda p, g: p - 0.1 * g, params, jax.grad(loss)(params))
        return prob(params), prob(stepped)

    before, after = probs_before_after(params)
    assert bool(jnp.all(after > before))


def test_entropy_bonus_gradient_hand_case():
    logits = jnp.array([1.0, 0.0])

    def loss(logits):
        dist = distrax.Categorical(logits=logits)
        out, _ = ac.actor_loss_reinforce(jnp.zeros(()), jnp.zeros(()), dist.log_prob(0),
                                         dist.entropy(), jnp.ones(()), 0.1)
        return out

    p = np.exp([1.0, 0.0]) / np.exp([1.0, 0.0]).sum()
    entropy = -(p * np.log(p)).sum()
    d_entropy = -p * (np.log(p) + entropy)                    # dH / d logits
    np.testing.assert_allclose(jax.grad(loss)(logits), -0.1 * d_entropy, rtol=1e-5)
    assert float(jax.grad(loss)(logits)[0]) > 0.0             # pushes towards uniform


def test_dynamics_loss_hand_case():
    returns = jnp.array([[1.0, 2.0]])
    entropy = jnp.array([[0.5, 0.5]])
    weights = jnp.array([[1.0, 0.5]])
    out, metrics = ac.actor_loss_dynamics(returns, entropy, weights, 0.1, 2.0)
    np.testing.assert_allclose(out, [[-0.55, -0.525]], rtol=1e-6)
    grad_returns, grad_weights = jax.grad(
        lambda r, w: ac.actor_loss_dynamics(r, entropy, w, 0.1, 2.0)[0].sum(), argnums=(0, 1)
    )(returns, weights)
    np.testing.assert_allclose(grad_returns, [[-0.5, -0.25]])
    np.testing.assert_allclose(grad_weights, 0.0)
    np.testing.assert_allclose(metrics["return_mean"], 1.5)


def test_loss_weights_hand_case():
    np.testing.assert_allclose(ac.loss_weights(jnp.array([0.5, 1.0, 0.0, 0.7])),
                               [1.0, 0.5, 0.5, 0.0])


def test_tanh_normal_actor():
    cfg = ac.ActorCriticConfig(actor_layers=1, actor_units=8, actor_std_shift=0.0,
                               actor_min_std=0.1)
    actor = ac.Actor(cfg, action_dim=2, discrete=False)
    params = _init(actor)
    feat = _feat()

    @jax.jit
    def run(params):
        action, aux = actor.sample(params, feat, jax.random.PRNGKey(1))
        log_prob = actor.dist(params, feat).log_prob(action)
        mean, std = actor._normal(actor._raw(params, feat))
        # reparameterised: the action carries a gradient to the params
        grads = jax.grad(lambda p: actor.sample(p, feat, jax.random.PRNGKey(1))[0].sum())(params)
        return action, aux, log_prob, actor.mode(params, feat), mean, std, grads

    action, aux, log_prob, mode, mean, std, grads = run(params)
    assert action.shape == (4, 2) and action.dtype == jnp.float32
    assert bool(jnp.all(jnp.abs(action) < 1.0))
    np.testing.assert_allclose(aux["log_prob"], log_prob, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(aux["entropy"], -aux["log_prob"], rtol=1e-5)
    np.testing.assert_allclose(mode, jnp.tanh(mean), rtol=1e-6)
    assert float(std.min()) >= 0.1 and float(jnp.abs(mean).max()) <= 5.0
    assert max(float(jnp.abs(g).max()) for g in jax.tree.leaves(grads)) > 0.0


def test_bounded_normal_and_discrete_actors():
    cfg = ac.ActorCriticConfig(actor_layers=1, actor_units=8, actor_dist="bounded_normal",
                               actor_min_std=0.1, actor_max_std=1.0, actor_unimix=0.01)
    feat = _feat()

    def run(actor):
        @jax.jit
        def f(params):
            action, aux = actor.sample(params, feat, jax.random.PRNGKey(1))
            dist = actor.dist(params, feat)
            extra = ((dist.log_prob(action), dist.entropy(), dist.stddev()) if not actor.discrete
                     else (actor._logits(actor._raw(params, feat)), actor.mode(params, feat)))
            return action, aux, extra
        return f(_init(actor))

    action, aux, (log_prob, entropy, std) = run(ac.Actor(cfg, action_dim=2, discrete=False))
    np.testing.assert_allclose(aux["log_prob"], log_prob, rtol=1e-5)
    np.testing.assert_allclose(aux["entropy"], entropy, rtol=1e-5)
    assert float(std.min()) >= 0.1 and float(std.max()) <= 1.0

    action, aux, (logits, mode) = run(ac.Actor(cfg, action_dim=3, discrete=True))
    np.testing.assert_allclose(action.sum(-1), 1.0)
    np.testing.assert_allclose(aux["log_prob"], (jax.nn.log_softmax(logits) * action).sum(-1),
                               rtol=1e-5)
    assert float(jax.nn.softmax(logits).min()) >= 0.01 / 3 - 1e-7
    np.testing.assert_array_equal(jnp.argmax(mode, -1), jnp.argmax(logits, -1))


def test_critic_loss_gaussian_hand_case_and_slow_regulariser():
    cfg = ac.ActorCriticConfig(critic_layers=1, critic_units=8)
    critic = ac.Critic(cfg)
    params = _init(critic)
    feat = _feat()
    value = jax.jit(critic.value)(params, feat)
    target, slow = value + 2.0, value - 1.0
    weights = jnp.array([1.0, 0.5, 0.0, 1.0])
    critic_loss = jax.jit(ac.critic_loss, static_argnums=(0, 6))
    out, _ = critic_loss(critic, params, feat, target, weights, slow, 0.5)
    c = heads.HALF_LOG_2PI
    expected = weights * ((0.5 * 4.0 + c) + 0.5 * (0.5 * 1.0 + c))
    np.testing.assert_allclose(out, expected, rtol=1e-5)
    grad_target = jax.jit(jax.grad(
        lambda t: ac.critic_loss(critic, params, feat, t, weights)[0].sum()))(target)
    np.testing.assert_allclose(grad_target, 0.0)


def test_twohot_critic_starts_at_zero_and_learns_the_target():
    cfg = ac.ActorCriticConfig(critic_layers=1, critic_units=8, critic_head="twohot")
    critic = ac.Critic(cfg)
    params = _init(critic)
    feat = _feat()
    # the two-hot head's output layer starts at zero: predictions start at symexp(0) = 0
    np.testing.assert_allclose(jax.jit(critic.value)(params, feat), 0.0, atol=1e-5)
    target = jnp.full(4, 5.0)
    loss = lambda p: ac.critic_loss(critic, p, feat, target, jnp.ones(4))[0].mean()
    step = jax.jit(lambda p: jax.tree.map(lambda x, g: x - 0.5 * g, p, jax.grad(loss)(p)))
    for _ in range(50):
        params = step(params)
    np.testing.assert_allclose(jax.jit(critic.value)(params, feat), 5.0, rtol=0.1)


def test_config_errors():
    cfg = ac.ActorCriticConfig(actor_grad="dynamics")
    with pytest.raises(ValueError, match="discrete"):
        cfg.actor_grad_for(discrete=True)
    assert ac.ActorCriticConfig().actor_grad_for(discrete=True) == "reinforce"
    assert ac.ActorCriticConfig().actor_grad_for(discrete=False) == "dynamics"
    with pytest.raises(ValueError, match="actor_dist"):
        ac.ActorCriticConfig(actor_dist="beta")
    with pytest.raises(ValueError, match="critic_head"):
        ac.ActorCriticConfig(critic_head="mse")
