"""DrQ-v2 (Yarats et al. 2021): DDPG-style actor-critic from pixels with random-shift augmentation.

Faithful to facebookresearch/drqv2: conv encoder trained only by the critic loss; actor and
critic each with a Linear+LayerNorm+Tanh trunk; twin Q; n-step targets from the online encoder
on ``next_obs`` (no gradient) and an EMA target critic (tau 0.01); exploration and target noise
from a std schedule, clipped to ``stddev_clip`` in the updates; uniform random actions for the
first ``num_expl_steps`` agent steps; three Adam optimisers (encoder, actor, critic).

One ``update`` does, in order (as the official ``DrQV2Agent.update``), with the call sites of
the objectives (``cfg.objectives``, ``rl.core.objective.Objective``) and the modules
(``cfg.modules``, ``rl.modules``) in brackets:
  1. random-shift ``obs`` and ``next_obs`` (independent draws); encode ``obs`` (kept for its VJP)
     and ``next_obs`` (stopped);
  2. [modules: activations] one actor forward pass over sg(features) with the sown
     ``"intermediates"`` (same params and inputs as the actor loss in step 5, so the same
     activations; DrM's official order needs them before the target), as ``{"actor": ...}``
     plus the batch's ``"env_index"`` [B] (SGFD's domain labels);
  3. std = [modules: noise_std] (default: the schedule); next action = clipped-noise actor
     sample; target = [modules: value_target] of ``TargetInputs``, default
     ``r + discount * min(Q1', Q2')`` (with a value_target module the inputs also hold the
     stopped features and the online critic at the replayed action, and the module may update
     its state there: DrM's V-network step);
  4. critic + encoder step on ``MSE(Q1, y) + MSE(Q2, y)`` ([modules: sample_weights:critic] on
     the unreduced maps) + the joint objectives' maps x ``loss_scales`` (their params take a
     step with their own Adam);
  5. actor step on ``-min(Q1, Q2)(sg(features), a ~ pi)`` with the *updated* critic
     ([modules: sample_weights:actor]);
  6. target critic EMA;
  7. objectives with ``needs.separate_step`` take their own step (encoder + phi + own params);
  8. [modules: after_update] in order (may rewrite ``nets`` and ``opt_states``: shrink and
     perturb with ``rl.modules.perturb``, ``init_params`` and ``optimizers``).

The state's ``nets`` (``rl.agents.base``): ``encoder``, ``actor``, ``critic``, ``critic_target``
(EMA of the critic) and ``action_encoder`` (TACO's phi) only when an objective declares one;
``opt_states``: ``encoder``, ``actor``, ``critic`` (+ ``action_encoder``), one Adam each.

Objectives get ``ObjectiveInputs(batch, features, encode, extras, step)``: ``encode(obs, key)``
is a fresh random shift through the online encoder (with gradient); ``extras["encode_action"]``
is TACO's phi when an objective declares an ``action_encoder`` (the critic then sees
``phi(a)`` in the target, critic and actor losses). ``sample`` draws ``TransitionWindows`` of
the largest ``needs.window``.
"""
from __future__ import annotations

from typing import Any, Mapping

import flax
import jax
import jax.numpy as jnp
import optax

from rl.core.objective import ObjectiveInputs, weigh
from rl import modules as modules_lib
from rl import replay as replay_lib
from rl.agents import objectives as objectives_lib
from rl.agents.drqv2.config import DrQV2Config, PROVIDES
from rl.agents.drqv2.losses import (TargetInputs, actor_loss, critic_loss, min_q_target,
                                    sample_target_action)
from rl.agents.drqv2.networks import DrQV2Networks, make_networks
from rl.agents.objectives import ObjectiveSlots
from rl.core.schedules import parse_schedule
from rl.core.augment import random_shift
from rl.core.distributions import truncated_normal_sample
from rl.envs import frame_stack
from rl.core.types import EnvSpec
from rl.core.nets import conv_encoder_output_size
from rl.modules import WeightInputs

__all__ = ["DrQV2Agent", "DrQV2Config", "DrQV2State", "TargetInputs",
           "min_q_target", "PROVIDES"]

Metrics = dict[str, jax.Array]
Params = Any



@flax.struct.dataclass
class DrQV2State:
    nets: dict[str, Params]       # encoder, actor, critic, critic_target (+ action_encoder)
    opt_states: dict[str, Any]    # one Adam per trained net: encoder, actor, critic (+ phi)
    objectives: ObjectiveSlots    # per objective: params, Adam state, extra state
    modules: dict[str, Any]       # per module: its state (rl.modules)
    update_count: jax.Array       # int32, number of updates done


class DrQV2Agent:
    """DrQ-v2 behind the ``rl.agents.base.Agent`` protocol (continuous actions in [-1, 1])."""

    name = "drqv2"
    provides = PROVIDES

    def __init__(self, cfg: DrQV2Config, spec: EnvSpec,
                 modules: Mapping[str, Any] | None = None):
        """``modules``: module configs keyed by name (``None``: ``cfg.modules``)."""
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
        self.objectives = objectives_lib.build(cfg.objectives, "drqv2", self)
        encoders = [o.action_encoder for o in self.objectives
                    if getattr(o, "action_encoder", None) is not None]
        if len(encoders) > 1:
            raise ValueError(f"at most one objective may give the critic an action encoder, "
                             f"got {[o.name for o in self.objectives]}")
        self.action_encoder = encoders[0] if encoders else None
        self.modules = modules_lib.Modules.build(cfg.modules if modules is None else modules,
                                                 self)
        self.window = objectives_lib.window(self.objectives)
        # per env, before the loop may sample (TACO's windows look max(n, K) steps ahead)
        self.min_replay_steps = max(cfg.n_step, self.window) + 1
        self.stddev_schedule = parse_schedule(cfg.stddev_schedule)
        self.encoder_opt = optax.adam(cfg.lr)
        self.actor_opt = optax.adam(cfg.lr)
        self.critic_opt = optax.adam(cfg.lr)
        self.objective_opts = {o.name: optax.adam(cfg.lr if getattr(o, "lr", None) is None
                                                  else o.lr) for o in self.objectives}
        # The official encoder optimiser holds the encoder and phi; Adam is elementwise, so a
        # second Adam with the same settings is the same update.
        self.action_encoder_opt = optax.adam(cfg.lr)
        self.optimizers = {"encoder": self.encoder_opt, "actor": self.actor_opt,
                           "critic": self.critic_opt}          # keyed as state.opt_states
        if self.action_encoder is not None:
            self.optimizers["action_encoder"] = self.action_encoder_opt

    # ------------------------------------------------------------------ state
    def init_params(self, key: jax.Array) -> dict[str, Params]:
        """Fresh params of the trained nets: ``encoder``, ``actor``, ``critic`` (+ phi)."""
        k_enc, k_actor, k_critic, k_phi = jax.random.split(key, 4)
        obs = jnp.zeros((1, *self.stacked_obs_shape), jnp.uint8)
        features = jnp.zeros((1, self.repr_dim), jnp.float32)
        action = jnp.zeros((1, self.action_dim), jnp.float32)
        nets = {}
        if self.action_encoder is not None:
            nets["action_encoder"] = self.action_encoder.init(k_phi, action)
            action = self.action_encoder.apply(nets["action_encoder"], action)
        return {"encoder": self.nets.encoder.init(k_enc, obs),
                "actor": self.nets.actor.init(k_actor, features),
                "critic": self.nets.critic.init(k_critic, features, action), **nets}

    def opt_params(self, state: DrQV2State) -> dict[str, Params]:
        """The params each optimiser steps, keyed as ``state.opt_states``."""
        return {name: state.nets[name] for name in self.optimizers}

    def critic_action(self, action_encoder: Any, action: jax.Array) -> jax.Array:
        """What the critic sees of an action: ``phi(a)`` with an objective's action encoder."""
        if self.action_encoder is None:
            return action
        return self.action_encoder.apply(action_encoder, action)

    def _separate_params(self, params: dict[str, Params], objective_params: Any) -> Any:
        # A separate step optimises the encoder (and phi) too, with its own moments (TACO's
        # taco_opt).
        if "action_encoder" not in params:
            return {"encoder": params["encoder"], "aux": objective_params}
        return {"encoder": params["encoder"], "action_encoder": params["action_encoder"],
                "aux": objective_params}

    def _opt_params(self, objective: Any, params: dict[str, Params],
                    objective_params: Any) -> Any:
        if objective.needs.separate_step:
            return self._separate_params(params, objective_params)
        return objective_params

    def init(self, key: jax.Array) -> DrQV2State:
        key, k_params = jax.random.split(key)
        params = jax.jit(self.init_params)(k_params)  # one compile instead of one per layer op
        example = ObjectiveInputs(batch=None, features=jnp.zeros((1, self.repr_dim), jnp.float32))
        obj_params, obj_states = objectives_lib.init_params(self.objectives, key, example)
        # A copy, not the same buffers: the loop donates the state, and XLA refuses to donate
        # one buffer twice.
        nets = {**params, "critic_target": jax.tree.map(jnp.copy, params["critic"])}
        state = DrQV2State(nets=nets, opt_states={},
                           objectives=ObjectiveSlots(params=obj_params, opt_states={},
                                                     states=obj_states),
                           modules=self.modules.init(jax.random.fold_in(key, 1), self),
                           update_count=jnp.zeros((), jnp.int32))
        return self.reset_optimizers(state)

    def reset_optimizers(self, state: DrQV2State) -> DrQV2State:
        """Fresh Adam states for every optimiser, the objectives' included (a module resets
        chosen ones with ``rl.modules.perturb.reset_opt_states``)."""
        params = state.nets
        obj_opt_states = {
            o.name: self.objective_opts[o.name].init(
                self._opt_params(o, params, state.objectives.params[o.name]))
            for o in self.objectives}
        opt_states = {name: self.optimizers[name].init(p)
                      for name, p in self.opt_params(state).items()}
        return state.replace(opt_states=opt_states,
                             objectives=state.objectives.replace(opt_states=obj_opt_states))

    def initial_carry(self, num_envs: int) -> Any:
        return frame_stack.init(num_envs, self.spec.obs_shape, self.cfg.frame_stack)

    # ------------------------------------------------------------------ acting
    def noise_std(self, module_states: dict, step: jax.Array) -> jax.Array:
        """The std for acting, the target action and the actor update: the schedule, then the
        modules' ``noise_std`` in order."""
        return self.modules.noise_std(module_states, step, self.stddev_schedule(step))

    def encode(self, params: dict[str, Params], obs: jax.Array) -> jax.Array:
        """Encoder features ``[B, repr_dim]`` of frame stacks ``[B, H, W, C*S]`` (``params``:
        ``state.nets``)."""
        return self.nets.encoder.apply(params["encoder"], obs)

    def actor_intermediates(self, params: dict[str, Params], features: jax.Array) -> dict:
        """The actor's sown activations on ``features`` (trunk ``linear``, ``policy/hidden_i``,
        ``policy/output``), each a one-element tuple."""
        _, variables = self.nets.actor.apply(params["actor"], jax.lax.stop_gradient(features),
                                             mutable=["intermediates"])
        return variables["intermediates"]

    def act(self, state: DrQV2State, carry: Any, obs: jax.Array, is_first: jax.Array,
            key: jax.Array, step: jax.Array, explore: bool) -> tuple[jax.Array, Any]:
        carry = frame_stack.push(carry, obs, is_first)
        stacked = frame_stack.stacked(carry)
        mean = self.nets.actor.apply(state.nets["actor"], self.encode(state.nets, stacked))
        if not explore:
            return mean, carry
        k_noise, k_uniform = jax.random.split(key)
        step = jnp.asarray(step)
        action = truncated_normal_sample(k_noise, mean, self.noise_std(state.modules, step),
                                         clip=None)
        uniform = jax.random.uniform(k_uniform, mean.shape, mean.dtype, -1.0, 1.0)
        return jnp.where(step < self.cfg.num_expl_steps, uniform, action), carry

    # ------------------------------------------------------------------ learning
    def sample(self, replay: Any, key: jax.Array) -> Any:
        """``Transitions``, or ``TransitionWindows`` when an objective needs a window."""
        cfg = self.cfg
        if self.window:
            return replay_lib.sample_transition_windows(replay, key, cfg.batch_size, cfg.n_step,
                                                        cfg.gamma, cfg.frame_stack, self.window)
        return replay_lib.sample_transitions(replay, key, cfg.batch_size, cfg.n_step, cfg.gamma,
                                             cfg.frame_stack)

    def objective_inputs(self, batch: Any, features: jax.Array, encoder_params: Any,
                         phi_params: Any, step: jax.Array) -> ObjectiveInputs:
        """What an objective's ``loss`` gets, closing over the params being differentiated."""
        nets, pad = self.nets, self.cfg.shift_pad
        encode = lambda obs, key: nets.encoder.apply(encoder_params, random_shift(key, obs, pad))
        extras = {}
        if self.action_encoder is not None:
            extras["encode_action"] = lambda a: self.action_encoder.apply(phi_params, a)
        return ObjectiveInputs(batch=batch, features=features, encode=encode, extras=extras,
                               step=step)

    def update(self, state: DrQV2State, batch: Any, key: jax.Array,
               step: jax.Array) -> tuple[DrQV2State, Metrics]:
        cfg, nets, modules = self.cfg, self.nets, self.modules
        step = jnp.asarray(step)
        k_obs, k_next, k_target, k_actor, k_aux, k_sep = jax.random.split(key, 6)
        params, slots, module_states = state.nets, state.objectives, state.modules
        tr = batch.transition if isinstance(batch, replay_lib.TransitionWindows) else batch
        batch_size = tr.obs.shape[0]
        reward = tr.reward.reshape(batch_size).astype(jnp.float32)
        discount = tr.discount.reshape(batch_size).astype(jnp.float32)
        action = tr.action.astype(jnp.float32)
        metrics: Metrics = {"batch_reward": reward.mean()}

        # 1. augment and encode; the obs encoding keeps its VJP for the critic step.
        obs = random_shift(k_obs, tr.obs, cfg.shift_pad)
        next_obs = random_shift(k_next, tr.next_obs, cfg.shift_pad)
        features, encoder_vjp = jax.vjp(lambda enc: nets.encoder.apply(enc, obs),
                                        params["encoder"])
        next_features = jax.lax.stop_gradient(nets.encoder.apply(params["encoder"], next_obs))

        # 2. activations (DrM's dormant ratio).
        if modules.uses("activations"):
            module_states, module_metrics = modules.observe_activations(
                module_states, {"actor": self.actor_intermediates(params, features),
                                "env_index": tr.env_index}, step)
            metrics.update(module_metrics)

        # 3. critic target.
        std = self.noise_std(module_states, step)
        next_action = sample_target_action(nets, params["actor"], next_features, k_target, std,
                                           cfg.stddev_clip)
        next_q1, next_q2 = nets.critic.apply(
            params["critic_target"], next_features,
            jax.lax.stop_gradient(self.critic_action(params.get("action_encoder"), next_action)))
        target_inputs = TargetInputs(reward=reward, discount=discount, next_q1=next_q1,
                                     next_q2=next_q2, next_features=next_features,
                                     next_action=next_action, step=step)
        if modules.uses("value_target"):
            sg_features = jax.lax.stop_gradient(features)
            q1_now, q2_now = jax.lax.stop_gradient(nets.critic.apply(
                params["critic"], sg_features,
                self.critic_action(params.get("action_encoder"), action)))
            target_inputs = target_inputs.replace(features=sg_features, q1=q1_now, q2=q2_now)
        target, module_states, target_metrics = modules.value_target_step(
            module_states, target_inputs, min_q_target(target_inputs))
        target = jax.lax.stop_gradient(target)
        metrics.update(target_metrics)
        weigh_inputs = lambda loss: WeightInputs(loss, batch, jax.lax.stop_gradient(features), step)
        critic_weights = modules.sample_weights(module_states, weigh_inputs("critic"))

        # 4. critic + encoder (+ joint objectives).
        joint = [o for o in self.objectives if not o.needs.separate_step]
        joint_keys = jax.random.split(k_aux, max(len(joint), 1))

        def loss_fn(features, encoder_params, critic_params, obj_params, phi_params):
            q1, q2 = nets.critic.apply(critic_params, features, self.critic_action(phi_params, action))
            loss, loss_metrics = critic_loss(q1, q2, target, critic_weights)
            inputs = self.objective_inputs(batch, features, encoder_params, phi_params, step)
            for o, k in zip(joint, joint_keys):
                maps, obj_metrics = o.loss(obj_params[o.name], slots.states[o.name], inputs, k)
                total, _ = weigh(maps, o.loss_scales)
                loss = loss + total
                loss_metrics |= objectives_lib.named_metrics(o, maps, obj_metrics, total)
            return loss, loss_metrics

        joint_params = {o.name: slots.params[o.name] for o in joint}
        (_, loss_metrics), grads = jax.value_and_grad(
            loss_fn, argnums=(0, 1, 2, 3, 4), has_aux=True)(
            features, params["encoder"], params["critic"], joint_params,
            params.get("action_encoder"))
        grad_features, grad_encoder_direct, grad_critic, grad_joint, grad_phi = grads
        (grad_encoder_via_features,) = encoder_vjp(grad_features)
        grad_encoder = jax.tree.map(jnp.add, grad_encoder_direct, grad_encoder_via_features)
        metrics.update(loss_metrics)
        metrics["encoder_grad_norm"] = optax.global_norm(grad_encoder)
        metrics["critic_grad_norm"] = optax.global_norm(grad_critic)

        opt_states = dict(state.opt_states)
        encoder, opt_states["encoder"] = _adam_step(self.encoder_opt, grad_encoder,
                                                    opt_states["encoder"], params["encoder"])
        critic, opt_states["critic"] = _adam_step(self.critic_opt, grad_critic,
                                                  opt_states["critic"], params["critic"])
        phi = params.get("action_encoder")
        if phi is not None:
            phi, opt_states["action_encoder"] = _adam_step(
                self.action_encoder_opt, grad_phi, opt_states["action_encoder"], phi)
        obj_params, obj_opt_states = dict(slots.params), dict(slots.opt_states)
        for o in joint:
            obj_params[o.name], obj_opt_states[o.name] = _adam_step(
                self.objective_opts[o.name], grad_joint[o.name], slots.opt_states[o.name],
                slots.params[o.name])

        # 5. actor, against the updated critic, on stopped features of the pre-update encoder.
        (_, actor_metrics), grad_actor = jax.value_and_grad(actor_loss, argnums=1, has_aux=True)(
            nets, params["actor"], critic, features, k_actor, std, cfg.stddev_clip,
            None if phi is None else (lambda a: self.critic_action(phi, a)),
            modules.sample_weights(module_states, weigh_inputs("actor")))
        actor, opt_states["actor"] = _adam_step(self.actor_opt, grad_actor, opt_states["actor"],
                                                params["actor"])
        metrics.update(actor_metrics)
        metrics["actor_grad_norm"] = optax.global_norm(grad_actor)
        metrics["actor_std"] = jnp.asarray(std, jnp.float32)

        # 6. target critic.
        critic_target = optax.incremental_update(critic, params["critic_target"],
                                                 cfg.critic_target_tau)
        params = {"encoder": encoder, "actor": actor, "critic": critic,
                  "critic_target": critic_target}
        if phi is not None:
            params["action_encoder"] = phi

        # 7. objectives with their own step over the (updated) encoder and their params.
        separate = [o for o in self.objectives if o.needs.separate_step]
        for o, k in zip(separate, jax.random.split(k_sep, max(len(separate), 1))):
            def separate_loss(opt_params, o=o, k=k):
                feats = nets.encoder.apply(opt_params["encoder"], obs)
                inputs = self.objective_inputs(batch, feats, opt_params["encoder"],
                                               opt_params.get("action_encoder"), step)
                maps, obj_metrics = o.loss(opt_params["aux"], slots.states[o.name], inputs, k)
                total, _ = weigh(maps, o.loss_scales)
                return total, objectives_lib.named_metrics(o, maps, obj_metrics, total)

            opt_params = self._separate_params(params, obj_params[o.name])
            (_, obj_metrics), grad = jax.value_and_grad(separate_loss, has_aux=True)(opt_params)
            opt_params, obj_opt_states[o.name] = _adam_step(
                self.objective_opts[o.name], grad, obj_opt_states[o.name], opt_params)
            params = {**params, **{k: v for k, v in opt_params.items() if k != "aux"}}
            obj_params[o.name] = opt_params["aux"]
            metrics |= obj_metrics
            metrics[f"{o.name}/grad_norm"] = optax.global_norm(grad)

        obj_states = {o.name: o.update_state(slots.states[o.name], metrics)
                      for o in self.objectives}
        state = DrQV2State(nets=params, opt_states=opt_states,
                           objectives=ObjectiveSlots(params=obj_params, opt_states=obj_opt_states,
                                                     states=obj_states),
                           modules=module_states, update_count=state.update_count + 1)
        # 8. modules that rewrite the state (shrink and perturb, optimiser resets).
        if modules.uses("after_update"):
            state = modules.after_update(state, jax.random.fold_in(key, 1), step)
        return state, metrics


def _adam_step(opt: optax.GradientTransformation, grads: Any, opt_state: Any,
               params: Any) -> tuple[Any, Any]:
    updates, opt_state = opt.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state
