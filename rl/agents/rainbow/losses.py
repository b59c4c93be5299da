"""Rainbow's losses as pure functions: C51 projection, cross-entropy/KL, PER importance weights,
and the per-step reward clipping of n-step returns (all jittable)."""
from __future__ import annotations

import jax
import jax.numpy as jnp

from rl.replay import ReplayState, Transitions, gather_window, n_step_return

KL_EPS = 1e-6   # SPR's NaN guard: target probabilities and KL priorities clamped to [eps, 1/eps]


def categorical_l2_project(target_support: jax.Array, probs: jax.Array,
                           support: jax.Array) -> jax.Array:
    """Project a distribution with ``probs [B, N']`` on atoms ``target_support [B, N']`` onto the
    fixed, evenly spaced ``support [N]`` (Bellemare et al. 2017; rlpyt's ``projection_coeffs``,
    Dopamine's ``project_distribution``): atoms are clipped to ``[support[0], support[-1]]``
    and each one's mass split between its two neighbours by linear interpolation. ``[B, N]``."""
    delta = support[1] - support[0]
    clipped = jnp.clip(target_support, support[0], support[-1])
    weights = jnp.clip(1.0 - jnp.abs(clipped[:, None, :] - support[None, :, None]) / delta,
                       0.0, 1.0)                                        # [B, N, N']
    return jnp.sum(weights * probs[:, None, :], axis=-1)


def c51_target(reward: jax.Array, discount: jax.Array, next_probs: jax.Array,
               support: jax.Array) -> jax.Array:
    """The projected n-step target ``Phi(r + discount * z)`` with ``next_probs [B, N]`` (no
    gradient): ``reward`` is the discounted n-step sum, ``discount`` gamma^m (0 after a
    terminal), both ``[B]``."""
    atoms = reward[:, None] + discount[:, None] * support[None, :]
    return jax.lax.stop_gradient(categorical_l2_project(atoms, next_probs, support))


def c51_loss(logits: jax.Array, action: jax.Array,
             target: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Per-sample cross-entropy ``-sum_i target_i log p_i(s, a)`` and the priority
    ``KL(target || p)`` (SPR's ``dist_rl_loss``; target clamped at ``KL_EPS``, KL to
    ``[KL_EPS, 1/KL_EPS]``, no gradient). ``logits [B, A, N]``, ``action [B]``,
    ``target [B, N]``."""
    log_p = jax.nn.log_softmax(logits, axis=-1)
    log_p = jnp.take_along_axis(log_p, action.astype(jnp.int32)[:, None, None], axis=1)[:, 0]
    cross_entropy = -jnp.sum(target * log_p, axis=-1)
    safe = jnp.clip(target, KL_EPS, 1.0)
    kl = jnp.sum(safe * (jnp.log(safe) - jax.lax.stop_gradient(log_p)), axis=-1)
    return cross_entropy, jnp.clip(kl, KL_EPS, 1.0 / KL_EPS)


def importance_weights(prob: jax.Array, beta: jax.Array | float) -> jax.Array:
    """PER weights ``(1 / prob)^beta`` normalised by the batch maximum (rlpyt, Schaul et al.);
    the buffer size cancels in the normalisation."""
    w = jnp.maximum(prob, 1e-12) ** -jnp.asarray(beta, jnp.float32)
    return jax.lax.stop_gradient(w / jnp.max(w))


def select_distribution(probs: jax.Array, action: jax.Array) -> jax.Array:
    """``probs [B, A, N]`` at ``action [B]`` -> ``[B, N]``."""
    return jnp.take_along_axis(probs, action.astype(jnp.int32)[:, None, None], axis=1)[:, 0]


def clip_n_step_rewards(replay: ReplayState, tr: Transitions, n_step: int,
                        gamma: float | jax.Array, clip: float) -> Transitions:
    """``tr`` with its n-step return recomputed from per-step rewards clipped to ``[-clip, clip]``
    (the replay stores raw rewards; the same steps as ``tr``: ``discount`` and ``next_obs`` are
    unchanged)."""
    ahead = gather_window(replay, tr.env_index, (tr.slot + 1) % replay.capacity_per_env, n_step,
                          fields=("reward", "discount", "is_first", "is_last"))
    ret, _, _ = n_step_return(jnp.clip(ahead["reward"], -clip, clip), ahead["discount"],
                              ahead["is_first"], ahead["is_last"], gamma)
    return tr.replace(reward=ret)
