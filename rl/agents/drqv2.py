"""DrQ-v2 (Yarats et al. 2021): DDPG-style actor-critic from pixels with random-shift augmentation.

Faithful to facebookresearch/drqv2: conv encoder trained only by the critic loss; actor and
critic each with a Linear+LayerNorm+Tanh trunk; twin Q; n-step targets from the online encoder
on ``next_obs`` (no gradient) and an EMA target critic (tau 0.01); exploration and target noise
from a std schedule, clipped to ``stddev_clip`` in the updates; uniform random actions for the
first ``num_expl_steps`` agent steps; three Adam optimisers (encoder, actor, critic).

One ``update`` does, in order (as the official ``DrQV2Agent.update``):
  1. random-shift ``obs`` and ``next_obs`` (independent draws); encode ``obs`` (kept for its VJP)
     and ``next_obs`` (stopped);
  2. [hook d] if set, ``observe_actor_activations(aux, intermediates, step)`` on one actor
     forward pass over sg(features) (same params and inputs as the actor loss in step 5, so the
     same activations; DrM's official order needs them before the target);
  3. std = [hook c] ``noise_std(aux, step)``; next action = clipped-noise actor sample;
     target = [hook b] ``value_target(TargetInputs)``, default ``r + discount * min(Q1', Q2')``;
  4. critic + encoder step on ``MSE(Q1, y) + MSE(Q2, y)`` + [hook a] joint aux losses (each aux
     loss's params take a step with their own Adam);
  5. actor step on ``-min(Q1, Q2)(sg(features), a ~ pi)`` with the *updated* critic;
  6. target critic EMA;
  7. [hook a] aux losses with ``separate_step=True`` take their own step (encoder + own params).

Extension points (all in ``rl.agents.drqv2_hooks``; pass ``DrQV2Hooks`` to the constructor):
  (a) ``aux_losses``: ``AuxLoss(name, init, loss, lr, weight, separate_step)`` with
      ``loss(params, aux_params, batch, features, key) -> (loss, metrics)``; their params and
      optimiser states live in ``state.aux.params[name]`` / ``state.aux.opt_states[name]``
      (TACO's contrastive losses).
  (b) ``value_target(TargetInputs) -> (target, metrics)`` (DrM's expectile-V mixing).
  (c) ``noise_std(aux, step) -> std`` used for acting, the target action and the actor update
      (DrM's awaken exploration).
  (d) activations: the actor/critic MLPs and trunks ``sow`` into ``"intermediates"``;
      ``observe_actor_activations`` receives the actor's and may update ``aux.extra`` (DrM's
      dormant ratio). ``DrQV2Agent.actor_intermediates`` gives them outside ``update``.
  (e) ``perturb(params, fresh_params, alpha, where)`` (shrink and perturb, pure) together with
      ``DrQV2Agent.init_params`` for fresh params and ``DrQV2Agent.reset_optimizers``, e.g.
      ``perturb(state.params, agent.init_params(key), alpha, where=rl.core.nets.is_dense_param)``.
  (f) ``action_encoder``: the critic sees ``phi(a)`` in the target, critic and actor losses;
      ``window_horizon``: ``sample`` draws ``TransitionWindows`` (TACO).

``cfg.objective`` (``objective=taco``) builds these hooks from a representation objective
(``rl.agents.drqv2_objectives``); hooks passed to the constructor are combined with them.
"""
from __future__ import annotations

import dataclasses
from typing import Any

import flax
import jax
import jax.numpy as jnp
import optax

from rl import replay as replay_lib
from rl.agents.drqv2_config import DrQV2Config
from rl.agents.drqv2_hooks import (AuxLoss, AuxState, DrQV2Hooks, TargetInputs, min_q_target,
                                   perturb)
from rl.agents.drqv2_losses import actor_loss, critic_loss, sample_target_action
from rl.agents.drqv2_networks import DrQV2Networks, DrQV2Params, make_networks
from rl.agents.drqv2_objectives import objective_hooks
from rl.core.schedules import parse_schedule
from rl.core.augment import random_shift
from rl.core.distributions import truncated_normal_sample
from rl.envs import frame_stack
from rl.core.types import EnvSpec
from rl.core.nets import conv_encoder_output_size

__all__ = ["AuxLoss", "AuxState", "DrQV2Agent", "DrQV2Config", "DrQV2Hooks", "DrQV2Params",
           "DrQV2State", "TargetInputs", "min_q_target", "perturb"]

Metrics = dict[str, jax.Array]


@flax.struct.dataclass
class DrQV2State:
    params: DrQV2Params
    critic_target: Any            # EMA copy of params.critic (trunk + both heads)
    encoder_opt_state: Any
    actor_opt_state: Any
    critic_opt_state: Any
    aux: AuxState
    update_count: jax.Array       # int32, number of updates done
    action_encoder_opt_state: Any = None   # Adam of params.action_encoder (TACO's phi) if any


class DrQV2Agent:
    """DrQ-v2 behind the ``rl.agents.base.Agent`` protocol (continuous actions in [-1, 1])."""

    def __init__(self, cfg: DrQV2Config, spec: EnvSpec, hooks: DrQV2Hooks | None = None):
        action = spec.action
        if action.discrete or len(action.shape) != 1:
            raise ValueError(f"DrQ-v2 needs a continuous action vector, got {action}")
        if (action.low, action.high) not in ((None, None), (-1.0, 1.0)):
            raise ValueError(f"DrQ-v2 acts in [-1, 1]; got action bounds [{action.low}, "
                             f"{action.high}]: rescale actions in the env wrapper")
        self.cfg, self.spec = cfg, spec
        self.action_dim = action.shape[0]
        height, width, channels = spec.obs_shape
        self.stacked_obs_shape = (height, width, channels * cfg.frame_stack)
        self.repr_dim = conv_encoder_output_size(height, width, cfg.encoder_channels,
                                                 cfg.encoder_layers)
        self.nets: DrQV2Networks = make_networks(cfg, self.action_dim)
        self.hooks = _with_objective(hooks or DrQV2Hooks(), objective_hooks(
            cfg.objective, self.action_dim, self.nets.encoder, cfg.shift_pad))
        # per env, before the loop may sample (TACO's windows look max(n, K) steps ahead)
        self.min_replay_steps = max(cfg.n_step, self.hooks.window_horizon) + 1
        self.stddev_schedule = parse_schedule(cfg.stddev_schedule)
        self.encoder_opt = optax.adam(cfg.lr)
        self.actor_opt = optax.adam(cfg.lr)
        self.critic_opt = optax.adam(cfg.lr)
        self.aux_opts = {a.name: optax.adam(cfg.lr if a.lr is None else a.lr)
                         for a in self.hooks.aux_losses}
        # The official encoder optimiser holds the encoder and phi; Adam is elementwise, so a
        # second Adam with the same settings is the same update.
        self.action_encoder_opt = optax.adam(cfg.lr)

    # ------------------------------------------------------------------ state
    def init_params(self, key: jax.Array) -> DrQV2Params:
        k_enc, k_actor, k_critic, k_phi = jax.random.split(key, 4)
        obs = jnp.zeros((1, *self.stacked_obs_shape), jnp.uint8)
        features = jnp.zeros((1, self.repr_dim), jnp.float32)
        action = jnp.zeros((1, self.action_dim), jnp.float32)
        action_encoder = None
        if self.hooks.action_encoder is not None:
            action_encoder = self.hooks.action_encoder.init(k_phi, action)
            action = self.hooks.action_encoder.apply(action_encoder, action)
        return DrQV2Params(encoder=self.nets.encoder.init(k_enc, obs),
                           actor=self.nets.actor.init(k_actor, features),
                           critic=self.nets.critic.init(k_critic, features, action),
                           action_encoder=action_encoder)

    def critic_action(self, action_encoder: Any, action: jax.Array) -> jax.Array:
        """What the critic sees of an action: ``phi(a)`` with the action-encoder hook, else ``a``."""
        if self.hooks.action_encoder is None:
            return action
        return self.hooks.action_encoder.apply(action_encoder, action)

    def _aux_opt_params(self, aux: AuxLoss, params: DrQV2Params, aux_params: Any) -> Any:
        # A separate step optimises the encoder (and phi) too, with its own moments (TACO's
        # taco_opt).
        if not aux.separate_step:
            return aux_params
        if params.action_encoder is None:
            return {"encoder": params.encoder, "aux": aux_params}
        return {"encoder": params.encoder, "action_encoder": params.action_encoder, "aux": aux_params}

    def init(self, key: jax.Array) -> DrQV2State:
        key, k_params = jax.random.split(key)
        params = jax.jit(self.init_params)(k_params)  # one compile instead of one per layer op
        features = jnp.zeros((1, self.repr_dim), jnp.float32)
        aux_keys = jax.random.split(key, max(len(self.hooks.aux_losses), 1))
        aux_params = {a.name: a.init(k, features) for a, k in zip(self.hooks.aux_losses, aux_keys)}
        # A copy, not the same buffers: the loop donates the state, and XLA refuses to donate
        # one buffer twice.
        critic_target = jax.tree.map(jnp.copy, params.critic)
        state = DrQV2State(params=params, critic_target=critic_target, encoder_opt_state=None,
                           actor_opt_state=None, critic_opt_state=None,
                           aux=AuxState(params=aux_params, opt_states={},
                                        extra=self.hooks.init_extra()),
                           update_count=jnp.zeros((), jnp.int32))
        return self.reset_optimizers(state)

    def reset_optimizers(self, state: DrQV2State) -> DrQV2State:
        """Fresh Adam states for every optimiser (DrM resets them after a perturbation)."""
        params = state.params
        aux_opt_states = {
            a.name: self.aux_opts[a.name].init(
                self._aux_opt_params(a, params, state.aux.params[a.name]))
            for a in self.hooks.aux_losses}
        phi_opt_state = (None if params.action_encoder is None
                         else self.action_encoder_opt.init(params.action_encoder))
        return state.replace(encoder_opt_state=self.encoder_opt.init(params.encoder),
                             action_encoder_opt_state=phi_opt_state,
                             actor_opt_state=self.actor_opt.init(params.actor),
                             critic_opt_state=self.critic_opt.init(params.critic),
                             aux=state.aux.replace(opt_states=aux_opt_states))

    def initial_carry(self, num_envs: int) -> Any:
        return frame_stack.init(num_envs, self.spec.obs_shape, self.cfg.frame_stack)

    # ------------------------------------------------------------------ acting
    def noise_std(self, aux: AuxState, step: jax.Array) -> jax.Array:
        if self.hooks.noise_std is not None:
            return self.hooks.noise_std(aux, step)
        return self.stddev_schedule(step)

    def encode(self, params: DrQV2Params, obs: jax.Array) -> jax.Array:
        """Encoder features ``[B, repr_dim]`` of frame stacks ``[B, H, W, C*S]``."""
        return self.nets.encoder.apply(params.encoder, obs)

    def actor_intermediates(self, params: DrQV2Params, features: jax.Array) -> dict:
        """The actor's sown activations on ``features`` (trunk ``linear``, ``policy/hidden_i``,
        ``policy/output``), each a one-element tuple."""
        _, variables = self.nets.actor.apply(params.actor, jax.lax.stop_gradient(features),
                                             mutable=["intermediates"])
        return variables["intermediates"]

    def act(self, state: DrQV2State, carry: Any, obs: jax.Array, is_first: jax.Array,
            key: jax.Array, step: jax.Array, explore: bool) -> tuple[jax.Array, Any]:
        carry = frame_stack.push(carry, obs, is_first)
        stacked = frame_stack.stacked(carry)
        mean = self.nets.actor.apply(state.params.actor, self.encode(state.params, stacked))
        if not explore:
            return mean, carry
        k_noise, k_uniform = jax.random.split(key)
        step = jnp.asarray(step)
        action = truncated_normal_sample(k_noise, mean, self.noise_std(state.aux, step), clip=None)
        uniform = jax.random.uniform(k_uniform, mean.shape, mean.dtype, -1.0, 1.0)
        return jnp.where(step < self.cfg.num_expl_steps, uniform, action), carry

    # ------------------------------------------------------------------ learning
    def sample(self, replay: Any, key: jax.Array) -> Any:
        """``Transitions``, or ``TransitionWindows`` when ``hooks.window_horizon > 0``."""
        cfg, horizon = self.cfg, self.hooks.window_horizon
        if horizon:
            return replay_lib.sample_transition_windows(replay, key, cfg.batch_size, cfg.n_step,
                                                        cfg.gamma, cfg.frame_stack, horizon)
        return replay_lib.sample_transitions(replay, key, cfg.batch_size, cfg.n_step, cfg.gamma,
                                             cfg.frame_stack)

    def update(self, state: DrQV2State, batch: Any, key: jax.Array,
               step: jax.Array) -> tuple[DrQV2State, Metrics]:
        cfg, nets, hooks = self.cfg, self.nets, self.hooks
        step = jnp.asarray(step)
        k_obs, k_next, k_target, k_actor, k_aux, k_sep = jax.random.split(key, 6)
        params, aux = state.params, state.aux
        tr = batch.transition if isinstance(batch, replay_lib.TransitionWindows) else batch
        batch_size = tr.obs.shape[0]
        reward = tr.reward.reshape(batch_size).astype(jnp.float32)
        discount = tr.discount.reshape(batch_size).astype(jnp.float32)
        action = tr.action.astype(jnp.float32)
        metrics: Metrics = {"batch_reward": reward.mean()}

        # 1. augment and encode; the obs encoding keeps its VJP for the critic step.
        obs = random_shift(k_obs, tr.obs, cfg.shift_pad)
        next_obs = random_shift(k_next, tr.next_obs, cfg.shift_pad)
        features, encoder_vjp = jax.vjp(lambda enc: nets.encoder.apply(enc, obs), params.encoder)
        next_features = jax.lax.stop_gradient(nets.encoder.apply(params.encoder, next_obs))

        # 2. activations hook (DrM's dormant ratio).
        if hooks.observe_actor_activations is not None:
            aux, hook_metrics = hooks.observe_actor_activations(
                aux, self.actor_intermediates(params, features), step)
            metrics.update(hook_metrics)

        # 3. critic target.
        std = self.noise_std(aux, step)
        next_action = sample_target_action(nets, params.actor, next_features, k_target, std,
                                           cfg.stddev_clip)
        next_q1, next_q2 = nets.critic.apply(
            state.critic_target, next_features,
            jax.lax.stop_gradient(self.critic_action(params.action_encoder, next_action)))
        target, target_metrics = hooks.value_target(TargetInputs(
            reward=reward, discount=discount, next_q1=next_q1, next_q2=next_q2,
            next_features=next_features, next_action=next_action, aux=aux, step=step))
        target = jax.lax.stop_gradient(target)
        metrics.update(target_metrics)

        # 4. critic + encoder (+ joint aux losses).
        joint = [a for a in hooks.aux_losses if not a.separate_step]
        joint_keys = jax.random.split(k_aux, max(len(joint), 1))

        def loss_fn(features, encoder_params, critic_params, aux_params, phi_params):
            q1, q2 = nets.critic.apply(critic_params, features, self.critic_action(phi_params, action))
            loss, loss_metrics = critic_loss(q1, q2, target)
            current = DrQV2Params(encoder=encoder_params, actor=params.actor, critic=critic_params,
                                  action_encoder=phi_params)
            for a, k in zip(joint, joint_keys):
                aux_loss, aux_metrics = a.loss(current, aux_params[a.name], batch, features, k)
                loss = loss + a.weight * aux_loss
                loss_metrics |= {f"{a.name}/{n}": v for n, v in aux_metrics.items()}
                loss_metrics[f"{a.name}/loss"] = aux_loss
            return loss, loss_metrics

        joint_params = {a.name: aux.params[a.name] for a in joint}
        (_, loss_metrics), grads = jax.value_and_grad(
            loss_fn, argnums=(0, 1, 2, 3, 4), has_aux=True)(
            features, params.encoder, params.critic, joint_params, params.action_encoder)
        grad_features, grad_encoder_direct, grad_critic, grad_joint, grad_phi = grads
        (grad_encoder_via_features,) = encoder_vjp(grad_features)
        grad_encoder = jax.tree.map(jnp.add, grad_encoder_direct, grad_encoder_via_features)
        metrics.update(loss_metrics)
        metrics["encoder_grad_norm"] = optax.global_norm(grad_encoder)
        metrics["critic_grad_norm"] = optax.global_norm(grad_critic)

        encoder, encoder_opt_state = _adam_step(self.encoder_opt, grad_encoder,
                                                state.encoder_opt_state, params.encoder)
        critic, critic_opt_state = _adam_step(self.critic_opt, grad_critic,
                                              state.critic_opt_state, params.critic)
        phi, phi_opt_state = params.action_encoder, state.action_encoder_opt_state
        if phi is not None:
            phi, phi_opt_state = _adam_step(self.action_encoder_opt, grad_phi, phi_opt_state, phi)
        aux_params, aux_opt_states = dict(aux.params), dict(aux.opt_states)
        for a in joint:
            aux_params[a.name], aux_opt_states[a.name] = _adam_step(
                self.aux_opts[a.name], grad_joint[a.name], aux.opt_states[a.name],
                aux.params[a.name])

        # 5. actor, against the updated critic, on stopped features of the pre-update encoder.
        (_, actor_metrics), grad_actor = jax.value_and_grad(actor_loss, argnums=1, has_aux=True)(
            nets, params.actor, critic, features, k_actor, std, cfg.stddev_clip,
            None if phi is None else (lambda a: self.critic_action(phi, a)))
        actor, actor_opt_state = _adam_step(self.actor_opt, grad_actor, state.actor_opt_state,
                                            params.actor)
        metrics.update(actor_metrics)
        metrics["actor_grad_norm"] = optax.global_norm(grad_actor)
        metrics["actor_std"] = jnp.asarray(std, jnp.float32)

        # 6. target critic.
        critic_target = optax.incremental_update(critic, state.critic_target, cfg.critic_target_tau)
        params = DrQV2Params(encoder=encoder, actor=actor, critic=critic, action_encoder=phi)

        # 7. aux losses with their own step over the (updated) encoder and their params.
        separate = [a for a in hooks.aux_losses if a.separate_step]
        for a, k in zip(separate, jax.random.split(k_sep, max(len(separate), 1))):
            def separate_loss(opt_params, a=a, k=k):
                current = params.replace(encoder=opt_params["encoder"],
                                         action_encoder=opt_params.get("action_encoder"))
                feats = nets.encoder.apply(opt_params["encoder"], obs)
                return a.loss(current, opt_params["aux"], batch, feats, k)

            opt_params = self._aux_opt_params(a, params, aux_params[a.name])
            (aux_loss, aux_metrics), grad = jax.value_and_grad(separate_loss, has_aux=True)(
                opt_params)
            opt_params, aux_opt_states[a.name] = _adam_step(
                self.aux_opts[a.name], grad, aux_opt_states[a.name], opt_params)
            params = params.replace(encoder=opt_params["encoder"],
                                    action_encoder=opt_params.get("action_encoder"))
            aux_params[a.name] = opt_params["aux"]
            metrics |= {f"{a.name}/{n}": v for n, v in aux_metrics.items()}
            metrics[f"{a.name}/loss"] = aux_loss
            metrics[f"{a.name}/grad_norm"] = optax.global_norm(grad)

        state = DrQV2State(params=params, critic_target=critic_target,
                           encoder_opt_state=encoder_opt_state, actor_opt_state=actor_opt_state,
                           critic_opt_state=critic_opt_state,
                           aux=aux.replace(params=aux_params, opt_states=aux_opt_states),
                           update_count=state.update_count + 1,
                           action_encoder_opt_state=phi_opt_state)
        return state, metrics


def _with_objective(hooks: DrQV2Hooks, objective: DrQV2Hooks) -> DrQV2Hooks:
    """``hooks`` plus the objective's aux losses, action encoder and window horizon."""
    if objective.action_encoder is not None and hooks.action_encoder is not None:
        raise ValueError("both the objective and the given hooks set an action encoder")
    if objective.window_horizon and hooks.window_horizon:
        raise ValueError("both the objective and the given hooks set window_horizon")
    return dataclasses.replace(
        hooks, aux_losses=hooks.aux_losses + objective.aux_losses,
        action_encoder=hooks.action_encoder or objective.action_encoder,
        window_horizon=hooks.window_horizon or objective.window_horizon)


def _adam_step(opt: optax.GradientTransformation, grads: Any, opt_state: Any,
               params: Any) -> tuple[Any, Any]:
    updates, opt_state = opt.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state
