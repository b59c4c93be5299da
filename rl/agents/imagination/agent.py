"""The imagination agent: any world model + a list of objectives + latent actor-critic.

It sees the world model only through its protocol (``rl.core.world_model``): ``observe``,
``starts``, ``step``, ``imagine``, the reward/continue heads, ``decode_uint8``.

One ``update`` (pure, jitted and donated by the loop):
1. world model: ``observe`` the batch; the model's own loss maps (minus those an objective
   replaces) and every objective's maps, weighted by the model's and the objectives'
   ``loss_scales``; one Adam step on (world-model params, objective params); then each
   objective's ``update_state``.
2. behaviour: imagine ``horizon`` steps from every start of the batch (``world_model.starts``:
   ``B*T`` posteriors for the RSSM, gradients stopped) with the world model as it was BEFORE
   this update's model step (as DreamerV3, one jitted loss); λ-returns; one actor step (the
   loss map times [modules: sample_weights:actor], ``[N]`` over the starts) and one critic
   step; slow-critic EMA.

Return indexing (``ImaginationConfig.return_indexing``) over an imagined trajectory s_0 (start)
.. s_H with actions a_t taken in s_t:
- "v1" (Dreamer-v1, RePo port): the start state is dropped; the return of s_t (t = 1..H-1)
  counts the reward predicted AT s_t: ``G_t = r(s_t) + gamma c(s_t) ((1-λ) V(s_{t+1}) + λ
  G_{t+1})``, ``G_H = V(s_H)``. Only with dynamics backprop (actor_grad "dynamics").
- "v3" (DreamerV3): states s_0..s_{H-1}; ``G_t = r(s_{t+1}) + gamma c(s_{t+1}) ((1-λ)
  V(s_{t+1}) + λ G_{t+1})``, so the return of s_t is the one its action a_t earns.
Loss weights: ``w_t = prod_{i<t} k_i`` with ``k = gamma c`` (``weight_by_gamma``, Dreamer-v1) or
``k = c`` (DreamerV3; constant 1 without a continue head, as in the RePo port).

The state's ``nets`` (``rl.agents.base``): ``world_model``, ``actor``, ``critic``, ``slow_critic``
(EMA of the critic); ``opt_states``: ``world_model`` (one optimiser over the world model and
the objectives' params, as ``(nets["world_model"], objective_params)``), ``actor``, ``critic``.
"""
from __future__ import annotations

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from flax import struct

from rl.agents import composition
from rl import actor_critic as ac
from rl import modules as modules_lib
from rl import replay as replay_lib
from rl.agents.imagination.config import ImaginationConfig, PROVIDES
from rl.core import objective as objective_lib, world_model as world_model_lib
from rl.core.types import EnvSpec
from rl.imagination import ReturnNormalizer, lambda_returns

Params = Any
Carry = Any
# module call sites: the actor's activations on imagined states, exploration noise (acting), a


@struct.dataclass
class ImaginationState:
    nets: dict[str, Params]       # world_model, actor, critic, slow_critic
    opt_states: dict[str, Any]    # world_model (over it and objective_params), actor, critic
    objective_params: Params      # {slot: params} of the objectives
    objective_state: Any          # {slot: extra state} (e.g. RePo's dual variable)
    return_norm: ReturnNormalizer
    modules: dict[str, Any]       # per module: its state (rl.modules)


class ImaginationCarry(NamedTuple):
    latent: Carry                 # [N, ...] the world model's carry after the last frame
    prev_action: jax.Array        # [N, action_dim] model action vector that led to the next frame


def _adam(lr: float, clip: float, eps: float) -> optax.GradientTransformation:
    # flatten: the same math on one raveled vector; far fewer ops, so much faster compiles
    return optax.flatten(optax.chain(optax.clip_by_global_norm(clip), optax.adam(lr, eps=eps)))


def _head(batch: Any, num: int, length: int) -> Any:
    """The first ``num`` sequences and ``length`` steps of a batch (``[B]`` fields: ``num``)."""
    return jax.tree.map(lambda x: x[:num, :length] if x.ndim >= 2 else x[:num], batch)


class ImaginationAgent:
    name = "imagination"
    provides = PROVIDES

    def __init__(self, cfg: ImaginationConfig, spec: EnvSpec):
        self.cfg = cfg
        self.spec = spec
        self.modules = modules_lib.Modules.build(cfg.modules, self)
        self.min_replay_steps = cfg.length                      # per env, before sampling
        self.replayed_steps_per_update = cfg.batch_size * cfg.length  # for loop.train_ratio
        self.wm = world_model_lib.build(cfg.world_model, spec)
        self.objectives = composition.build(cfg.objectives, self.wm)
        self.replaced = composition.replaced_keys(self.objectives, self.wm.loss_keys)
        self.loss_scales = composition.loss_scales(self.objectives, self.wm.loss_keys,
                                                   self.wm.loss_scales)
        self.actor = ac.Actor(cfg.actor_critic, self.wm.action_dim, self.wm.discrete)
        self.critic = ac.Critic(cfg.actor_critic)
        self.actor_grad = cfg.actor_critic.actor_grad_for(self.wm.discrete)
        if self.actor_grad == "reinforce" and cfg.return_indexing == "v1":
            raise ValueError("REINFORCE needs return_indexing='v3' (with 'v1' the return of a "
                             "state counts a reward its action did not cause)")
        self.model_opt = _adam(cfg.model_lr, cfg.model_grad_clip, cfg.adam_eps)
        self.actor_opt = _adam(cfg.actor_lr, cfg.actor_grad_clip, cfg.adam_eps)
        self.critic_opt = _adam(cfg.critic_lr, cfg.critic_grad_clip, cfg.adam_eps)
        self.optimizers = {"world_model": self.model_opt, "actor": self.actor_opt,
                           "critic": self.critic_opt}          # keyed as state.opt_states

    # ---- Agent protocol ----------------------------------------------------------------------
    def init_params(self, key: jax.Array) -> dict[str, Params]:
        """Fresh params of the trained nets: ``world_model``, ``actor``, ``critic`` (the key
        split as ``init`` splits it)."""
        wm_key, _, actor_key, critic_key = jax.random.split(key, 4)
        return {"world_model": self.wm.init(wm_key),
                "actor": self.actor.init(actor_key, self.wm.feat_size),
                "critic": self.critic.init(critic_key, self.wm.feat_size)}

    def opt_params(self, state: ImaginationState) -> dict[str, Any]:
        """The params each optimiser steps, keyed as ``state.opt_states``."""
        return {"world_model": (state.nets["world_model"], state.objective_params),
                "actor": state.nets["actor"], "critic": state.nets["critic"]}

    def init(self, key: jax.Array) -> ImaginationState:
        obj_key = jax.random.split(key, 4)[1]
        module_key = jax.random.fold_in(key, 1)   # a fold: the other keys stay as they were
        nets = self.init_params(key)
        example = objective_lib.ObjectiveInputs(
            batch=None, features=jnp.zeros((1, 1, self.wm.feat_size), jnp.float32),
            model=self.wm)
        obj_params, obj_state = composition.init(self.objectives, obj_key, example)
        # a copy: the loop donates the state and one buffer cannot be donated twice
        nets["slow_critic"] = jax.tree.map(jnp.copy, nets["critic"])
        c = self.cfg.actor_critic
        state = ImaginationState(
            nets=nets, opt_states={}, objective_params=obj_params, objective_state=obj_state,
            return_norm=ReturnNormalizer.create(c.return_norm_decay, c.return_norm_low,
                                                c.return_norm_high, c.return_norm_limit,
                                                c.return_norm_method),
            modules=self.modules.init(module_key, self))
        return state.replace(opt_states={name: self.optimizers[name].init(p)
                                         for name, p in self.opt_params(state).items()})

    def initial_carry(self, num_envs: int) -> ImaginationCarry:
        return ImaginationCarry(self.wm.initial(num_envs),
                                jnp.zeros((num_envs, self.wm.action_dim), jnp.float32))

    def act(self, state: ImaginationState, carry: ImaginationCarry, obs: jax.Array,
            is_first: jax.Array, key: jax.Array, step: jax.Array,
            explore: bool) -> tuple[jax.Array, ImaginationCarry]:
        """Filter ``obs [N,H,W,C]`` into the model's carry (reset where ``is_first``), then
        sample the actor (+ exploration noise) or take its mode."""
        obs_key, act_key, noise_key = jax.random.split(key, 3)
        latent, feat = self.wm.step(state.nets["world_model"], carry.latent, carry.prev_action,
                                    obs, is_first, obs_key)
        if explore:
            action, _ = self.actor.sample(state.nets["actor"], feat, act_key)
            action = self._add_exploration(action, noise_key, state.modules, step)
        else:
            action = self.actor.mode(state.nets["actor"], feat)
        if not self.wm.discrete:
            action = jnp.clip(action, -1.0, 1.0)
        return self.wm.env_action(action), ImaginationCarry(latent, action)

    def _add_exploration(self, action: jax.Array, key: jax.Array, module_states: dict,
                         step: jax.Array) -> jax.Array:
        """Gaussian noise of std ``expl_noise`` (continuous) or epsilon-greedy (discrete); a
        ``noise_std`` module overrides the amount (e.g. DrM's awaken exploration)."""
        amount = self.cfg.expl_noise
        if self.modules.uses("noise_std"):
            amount = self.modules.noise_std(module_states, step, jnp.asarray(amount, jnp.float32))
        elif amount <= 0.0:
            return action
        if self.wm.discrete:   # epsilon-greedy over one-hot actions
            pick_key, random_key = jax.random.split(key)
            random = jax.nn.one_hot(jax.random.randint(random_key, action.shape[:-1], 0,
                                                       self.wm.action_dim),
                                    self.wm.action_dim, dtype=action.dtype)
            use_random = jax.random.uniform(pick_key, action.shape[:-1]) < amount
            return jnp.where(use_random[..., None], random, action)
        return jnp.clip(action + amount * jax.random.normal(key, action.shape), -1.0, 1.0)

    def sample(self, replay: Any, key: jax.Array) -> Any:
        return replay_lib.sample_sequences(replay, key, self.cfg.batch_size, self.cfg.length)

    def update(self, state: ImaginationState, batch: Any, key: jax.Array,
               step: jax.Array) -> tuple[ImaginationState, dict[str, jax.Array]]:
        model_key, actor_key = jax.random.split(key)
        wm_params = state.nets["world_model"]   # imagination: the model that made the posteriors
        state, starts, metrics = self._model_step(state, batch, model_key)
        start = jax.lax.stop_gradient(starts)
        state, behaviour_metrics = self._behaviour_step(state, wm_params, start, actor_key)
        if self.modules.uses("activations"):   # DrM's dormant ratio of the actor
            acts = behaviour_metrics.pop("actor_activations")
            module_states, module_metrics = self.modules.observe_activations(
                state.modules, {"actor": acts}, step)
            state = state.replace(modules=module_states)
            behaviour_metrics |= module_metrics
        if self.modules.uses("after_update"):
            state = self.modules.after_update(state, jax.random.fold_in(key, 1), step)
        return state, {**metrics, **behaviour_metrics}

    # ---- world model -------------------------------------------------------------------------
    def model_loss(self, trainable: tuple[Params, Params], objective_state: Any, batch: Any,
                   key: jax.Array) -> tuple[jax.Array, tuple[Carry, dict[str, Any], dict]]:
        """Weighted model + objective losses of the batch; aux: the imagination starts
        ``[B*T]``, metrics and each objective's metrics."""
        wm_params, obj_params = trainable
        observe_key, objective_key = jax.random.split(key)
        _, out = self.wm.observe(wm_params, self.wm.initial(batch.obs.shape[0]), batch,
                                 observe_key, self.cfg.observe_unroll)
        inputs = objective_lib.ObjectiveInputs(batch=batch, features=out.feats,
                                                 model=self.wm, model_out=out)
        maps, metrics, each = composition.losses(self.objectives, obj_params, objective_state,
                                                 inputs, objective_key)
        losses = {k: v for k, v in out.losses.items() if k not in self.replaced} | maps
        total, loss_metrics = objective_lib.weigh(losses, self.loss_scales)
        return total, (self.wm.starts(out), {**out.metrics, **metrics, **loss_metrics}, each)

    def _model_step(self, state: ImaginationState, batch: Any, key: jax.Array):
        trainable = (state.nets["world_model"], state.objective_params)
        (total, (starts, metrics, each)), grads = jax.value_and_grad(
            self.model_loss, has_aux=True)(trainable, state.objective_state, batch, key)
        updates, opt_state = self.model_opt.update(grads, state.opt_states["world_model"],
                                                   trainable)
        wm_params, obj_params = optax.apply_updates(trainable, updates)
        objective_state = composition.update_states(self.objectives, state.objective_state,
                                                    each)
        metrics = {f"wm/{k}": v for k, v in metrics.items()}
        metrics |= {"wm/loss": total, "wm/grad_norm": optax.global_norm(grads)}
        state = state.replace(nets={**state.nets, "world_model": wm_params},
                              opt_states={**state.opt_states, "world_model": opt_state},
                              objective_params=obj_params, objective_state=objective_state)
        return state, starts, metrics

    # ---- behaviour ---------------------------------------------------------------------------
    def actor_loss(self, actor_params: Params, wm_params: Params, state: ImaginationState,
                   start: Carry, key: jax.Array) -> tuple[jax.Array, dict[str, Any]]:
        """Mean actor loss over imagined trajectories from ``start [N, ...]`` under the world
        model ``wm_params`` (only the actor is differentiated; with dynamics backprop its
        gradient flows through the frozen model). Aux: the critic's inputs and targets, the new
        return normaliser and metrics; critic and slow critic come from ``state``."""
        cfg, c = self.cfg, self.cfg.actor_critic
        wm_params = jax.lax.stop_gradient(wm_params)
        policy = lambda feat, k: self.actor.sample(actor_params, jax.lax.stop_gradient(feat), k)
        traj = self.wm.imagine(wm_params, start, policy, cfg.horizon, key, cfg.imagine_unroll)
        feats = traj.feats                                               # [N, H+1, F]
        if cfg.return_indexing == "v3":
            state_feats, value_feats, aux = feats[:, :-1], feats, traj.aux
            reward = self.wm.reward(wm_params, feats[:, 1:])
            cont = self.wm.continue_prob(wm_params, feats[:, 1:])
        else:
            state_feats, value_feats = feats[:, 1:-1], feats[:, 1:]
            aux = jax.tree.map(lambda x: x[:, 1:], traj.aux)
            reward = self.wm.reward(wm_params, feats[:, 1:-1])
            cont = self.wm.continue_prob(wm_params, feats[:, 1:-1])
        metrics = {}
        bonus = self.modules.intrinsic_reward(state.modules, traj, state)   # [N, H] per transition
        if bonus is not None:
            # v3: reward(s_{t+1}) is transition t's; v1: reward(s_t), t = 1..H-1, transition t-1's
            bonus = bonus if cfg.return_indexing == "v3" else bonus[:, :-1]
            metrics["imag_intrinsic"] = jnp.mean(bonus)
            reward = reward + bonus
        discount = cfg.gamma * cont
        values = self.critic.value(state.nets["critic"], value_feats)
        slow_values = self.critic.value(state.nets["slow_critic"], value_feats)
        returns_fn = functools.partial(lambda_returns, lambda_=cfg.return_lambda,
                                       bootstrap=cfg.lambda_bootstrap)
        returns = returns_fn(reward, slow_values if c.slow_critic_target else values, discount)
        weights = ac.loss_weights(discount if c.weight_by_gamma else cont)
        return_norm = state.return_norm
        scale = 1.0
        if c.return_norm:
            return_norm = return_norm.update(returns)
            scale = return_norm.scale
        if self.actor_grad == "dynamics":
            loss, loss_metrics = ac.actor_loss_dynamics(returns, aux["entropy"], weights,
                                                        c.actor_entropy, scale)
        else:
            loss, loss_metrics = ac.actor_loss_reinforce(returns, values[:, :-1],
                                                         aux["log_prob"], aux["entropy"],
                                                         weights, c.actor_entropy, scale)
        metrics |= loss_metrics
        # [modules: sample_weights:actor] per-start weights [N] of the actor loss map [N, H']
        start_weights = self.modules.sample_weights(
            state.modules, modules_lib.WeightInputs("actor", start,
                                                    jax.lax.stop_gradient(feats[:, 0])))
        if start_weights is not None:
            loss = loss * start_weights[:, None]
        if c.slow_critic_reg_target == "value":
            slow_target = slow_values[:, :-1]
        else:
            slow_target = returns_fn(reward, slow_values, discount)
        activations = None
        if self.modules.uses("activations"):
            # the actor (same params) on the imagined states it acted in, no gradient
            activations = jax.lax.stop_gradient(self.actor.intermediates(
                actor_params, jax.lax.stop_gradient(feats[:, :-1])))
        metrics |= {"imag_reward": jnp.mean(reward), "imag_continue": jnp.mean(cont),
                    "return_scale": jnp.asarray(scale, jnp.float32)}
        sg = jax.lax.stop_gradient
        critic_inputs = {"feat": sg(state_feats), "target": sg(returns),
                         "slow_target": sg(slow_target), "weights": sg(weights)}
        return jnp.mean(loss), {"critic_inputs": critic_inputs, "return_norm": return_norm,
                                "metrics": metrics, "activations": activations}

    def critic_loss(self, critic_params: Params, inputs: dict[str, jax.Array]
                    ) -> tuple[jax.Array, dict[str, jax.Array]]:
        c = self.cfg.actor_critic
        loss, metrics = ac.critic_loss(self.critic, critic_params, inputs["feat"],
                                       inputs["target"], inputs["weights"],
                                       inputs["slow_target"], c.slow_critic_reg)
        return jnp.mean(loss), metrics

    def _behaviour_step(self, state: ImaginationState, wm_params: Params, start: Carry,
                        key: jax.Array):
        nets, opt_states = state.nets, state.opt_states
        (actor_loss, aux), actor_grads = jax.value_and_grad(self.actor_loss, has_aux=True)(
            nets["actor"], wm_params, state, start, key)
        updates, actor_opt_state = self.actor_opt.update(actor_grads, opt_states["actor"],
                                                         nets["actor"])
        actor_params = optax.apply_updates(nets["actor"], updates)
        (critic_loss, critic_metrics), critic_grads = jax.value_and_grad(
            self.critic_loss, has_aux=True)(nets["critic"], aux["critic_inputs"])
        updates, critic_opt_state = self.critic_opt.update(critic_grads, opt_states["critic"],
                                                           nets["critic"])
        critic_params = optax.apply_updates(nets["critic"], updates)
        slow = optax.incremental_update(critic_params, nets["slow_critic"],
                                        1.0 - self.cfg.actor_critic.slow_critic_decay)
        metrics = {f"actor/{k}": v for k, v in aux["metrics"].items()}
        metrics |= {f"critic/{k}": v for k, v in critic_metrics.items()}
        metrics |= {"actor/loss": actor_loss, "actor/grad_norm": optax.global_norm(actor_grads),
                    "critic/loss": critic_loss,
                    "critic/grad_norm": optax.global_norm(critic_grads)}
        if aux["activations"] is not None:   # taken out again by ``update``
            metrics["actor_activations"] = aux["activations"]
        state = state.replace(
            nets={**nets, "actor": actor_params, "critic": critic_params, "slow_critic": slow},
            opt_states={**opt_states, "actor": actor_opt_state, "critic": critic_opt_state},
            return_norm=aux["return_norm"])
        return state, metrics

    # ---- videos ------------------------------------------------------------------------------
    def report(self, state: ImaginationState, batch: Any, key: jax.Array,
               num_sequences: int = 1) -> dict[str, jax.Array]:
        """Open-loop prediction video ``uint8 [T, n*H, 3*W, C]``: truth | model | error.

        The first ``report_context`` frames are filtered (posterior, reconstructed); the rest are
        imagined under the batch's actions (``is_first`` is ignored there) and decoded.
        Empty without a decoder."""
        if not self.wm.has_decoder:
            return {}
        params = state.nets["world_model"]
        obs, actions = batch.obs[:num_sequences], batch.action[:num_sequences]
        length = obs.shape[1]
        context = max(1, min(self.cfg.report_context, length - 1))
        observe_key, imagine_key = jax.random.split(key)
        last, out = self.wm.observe(params, self.wm.initial(obs.shape[0]),
                                    _head(batch, num_sequences, context), observe_key)
        future = self.wm.action_vector(actions[:, context:])
        imagined = self.wm.imagine(params, last, None, length - context, imagine_key,
                                   actions=future)
        feats = jnp.concatenate([out.feats, imagined.feats[:, 1:]], 1)
        model = self.wm.decode_uint8(params, feats).astype(jnp.float32) / 255.0
        truth = obs.astype(jnp.float32) / 255.0
        error = (model - truth + 1.0) / 2.0
        video = jnp.concatenate([truth, model, error], axis=3)          # [n, T, H, 3W, C]
        video = jnp.concatenate(list(video), axis=1)                     # [T, n*H, 3W, C]
        return {"openloop": jnp.clip(jnp.round(video * 255.0), 0, 255).astype(jnp.uint8)}
