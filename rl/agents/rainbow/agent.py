"""Data-efficient Rainbow as in SPR (Schwarzer et al. 2021): the base agent of SPR on Atari-100k.

C51 (51 atoms on [-10, 10]) + dueling + factorised noisy nets (sigma0 0.5) in the head + Double
DQN + prioritised replay (alpha 0.5, beta 0.4 -> 1, priorities = KL(target || online)) +
10-step returns (gamma 0.99, per-step rewards clipped to [-1, 1]) on a Nature-CNN encoder, with
SPR's augmentation (shift 4 + intensity 0.05) of every encoded stack in the update; Adam (lr
1e-4, eps 1.5e-4) with the gradient norm clipped to 10; the target network a copy of the online
one after every update; eps-greedy 1 -> 0 over 2001 agent steps on top of the noise when
exploring, eps 0.001 and no noise in evaluation. The loop gives 2 updates per env step
(``loop.updates_per_call=2``, fused with ``lax.scan``) after 2000 warm-up steps (uniform random
actions, SPR's ``min_steps_learn``). Switches against the official code (new replay rows at
priority 1, the dueling head's 2^-1/2 gradient scale into the encoder, noisy bias sigma
sigma0/sqrt(out), zero-padded frame stacks), official by default: docs/FAITHFULNESS.md, SPR.

One ``update`` (mila-iqia/spr ``SPRCategoricalDQN.loss`` + rlpyt ``optimize_agent``):
  1. augment ``obs`` and ``next_obs`` (independent draws); one noise draw for the online
     network (current and next state, as SPR resets the noise once per loss), one for the target;
  2. target: next action = argmax of the online Q on ``next_obs`` (Double DQN), its target-net
     distribution projected onto the support at ``r + gamma^m z`` (0 after a terminal);
  3. per-sample C51 cross-entropy ([modules: sample_weights:c51]) + the objectives' ``[B]``
     maps x ``loss_scales``, times the PER importance weights ``(1/prob)^beta / max``,
     averaged; one clipped Adam step (objective params: their own, clipped on their own as
     SPR clips its dynamics model);
  4. target <- tau * online + (1 - tau) * target every ``target_update_period`` updates;
  5. new priorities = the per-sample KL (``update_with_priorities``; ``write_priorities``);
  6. [modules: after_update] in order.

Prioritised replay needs the priorities written back into the replay: the agent is an
``rl.agents.base.PrioritizedAgent`` (``update_with_priorities`` + ``write_priorities``), which
the loop fuses with ``sample`` into one jit with state and replay donated. Through ``update``
alone the priorities stay at the buffer's max priority, so sampling is uniform and the
importance weights are all 1.

Objectives (``cfg.objectives``, e.g. SPR) get ``ObjectiveInputs``: ``features`` = the online
latent of the augmented ``o_t`` (with gradient, the one the C51 loss uses), ``encode(obs, key)``
= augment + online encoder (with gradient), ``target_encode`` = the same through the target
network, ``extras["project"]`` = the head's first layer of every stream without noise (SPR's
projection, with gradient), ``extras["target_params"]``. ``sample`` draws ``TransitionWindows``
(``full_window=False``: starts near an episode's end are kept; ``future_valid`` masks the steps
after it) of the largest ``needs.window``; the C51 loss uses ``batch.transition``.

The state's ``nets`` (``rl.agents.base``): ``online`` (the Q network's variables
``{"params": {"encoder", "head"}}``: one clipped Adam over both, as the clip is on their joint
norm) and ``target``; ``opt_states``: ``online``.
"""
from __future__ import annotations

from typing import Any, Mapping

import flax
import jax
import jax.numpy as jnp
import optax

from rl import replay as replay_lib
from rl.core.schedules import parse_schedule
from rl.agents.rainbow.config import RainbowConfig, PROVIDES
from rl.core.objective import ObjectiveInputs
from rl import modules as modules_lib
from rl.agents import objectives as objectives_lib
from rl.agents.objectives import ObjectiveSlots
from rl.agents.rainbow.losses import (c51_loss, c51_target, clip_n_step_rewards,
                                      importance_weights, select_distribution)
from rl.agents.rainbow.networks import RainbowNetworks
from rl.core.nets import conv_output_size
from rl.envs import frame_stack
from rl.core.types import EnvSpec
from rl.modules import WeightInputs

__all__ = ["PROVIDES", "RainbowAgent", "RainbowConfig", "RainbowState"]

Metrics = dict[str, jax.Array]



@flax.struct.dataclass
class RainbowState:
    nets: dict[str, Any]        # online Q network {"params": {"encoder", "head"}}, target
    opt_states: dict[str, Any]  # online: clip + Adam
    objectives: ObjectiveSlots  # per objective (SPR: transition model, predictor)
    modules: dict[str, Any]     # per module: its state (rl.modules)
    update_count: jax.Array     # int32, updates done


class RainbowAgent:
    """Rainbow behind the ``rl.agents.base.Agent`` protocol (discrete actions)."""

    name = "rainbow"
    provides = PROVIDES

    def __init__(self, cfg: RainbowConfig, spec: EnvSpec,
                 modules: Mapping[str, Any] | None = None):
        """``modules``: module configs keyed by name (``None``: ``cfg.modules``)."""
        if not spec.action.discrete:
            raise ValueError(f"Rainbow needs discrete actions, got {spec.action}")
        self.cfg, self.spec = cfg, spec
        self.num_actions = int(spec.action.num_actions)
        height, width, channels = spec.obs_shape
        self.stacked_obs_shape = (height, width, channels * cfg.frame_stack)
        self.nets = RainbowNetworks(cfg, self.num_actions)
        self.objectives = objectives_lib.build(cfg.objectives, "rainbow", self)
        self.modules = modules_lib.Modules.build(cfg.modules if modules is None else modules,
                                                 self)
        self.window = objectives_lib.window(self.objectives)
        # per env, before the loop may sample (windows look max(n, K) steps ahead)
        self.min_replay_steps = max(cfg.n_step, self.window) + 1
        self.sampler = (replay_lib.prioritized(cfg.per_alpha) if cfg.prioritized
                        else replay_lib.uniform)
        self.epsilon_schedule = parse_schedule(cfg.epsilon_schedule)
        self.beta_schedule = parse_schedule(cfg.per_beta_schedule)
        self.opt = optax.chain(optax.clip_by_global_norm(cfg.max_grad_norm),
                               optax.adam(cfg.lr, eps=cfg.adam_eps))
        self.optimizers = {"online": self.opt}      # keyed as state.opt_states
        sides = [conv_output_size(side, cfg.encoder_kernels, cfg.encoder_strides,
                                  cfg.encoder_padding) for side in (height, width)]
        if min(sides) < 1:
            raise ValueError(f"images of {height}x{width} are too small for the encoder "
                             f"(kernels {cfg.encoder_kernels}, strides {cfg.encoder_strides}, "
                             f"{cfg.encoder_padding} padding)")
        self.latent_shape = (*sides, cfg.encoder_channels[-1])

    # ------------------------------------------------------------------ state
    def init_params(self, key: jax.Array) -> dict[str, Any]:
        """Fresh params of the trained net: ``online``."""
        return {"online": self.nets.init(key, self.stacked_obs_shape)}

    def opt_params(self, state: RainbowState) -> dict[str, Any]:
        """The params each optimiser steps, keyed as ``state.opt_states``."""
        return {"online": state.nets["online"]}

    def init(self, key: jax.Array) -> RainbowState:
        key, k_params = jax.random.split(key)
        params = jax.jit(self.init_params)(k_params)["online"]
        latent = jnp.zeros((1, *self.latent_shape), jnp.float32)
        example = ObjectiveInputs(batch=None, features=latent, extras={
            "project": lambda z: self.nets.project(params, z)})
        obj_params, obj_states = objectives_lib.init_params(self.objectives, key, example)
        return RainbowState(
            # no shared buffers: the state is donated
            nets={"online": params, "target": jax.tree.map(jnp.copy, params)},
            opt_states={"online": self.opt.init(params)},
            objectives=ObjectiveSlots(
                params=obj_params, states=obj_states,
                opt_states={name: self.opt.init(p) for name, p in obj_params.items()}),
            modules=self.modules.init(jax.random.fold_in(key, 1), self),
            update_count=jnp.zeros((), jnp.int32))

    def initial_carry(self, num_envs: int) -> Any:
        return frame_stack.init(num_envs, self.spec.obs_shape, self.cfg.frame_stack)

    # ------------------------------------------------------------------ acting
    def q_values(self, params: Any, obs: jax.Array,
                 noise_key: jax.Array | None = None) -> jax.Array:
        """``[B, A]`` expected returns of uint8 frame stacks ``[B, H, W, C*S]`` (no augmentation;
        ``noise_key`` None: no noise)."""
        latent = self.nets.encode(params, self.nets.prepare(obs))
        return self.nets.q_values(self.nets.logits(params, latent, noise_key))

    def act(self, state: RainbowState, carry: Any, obs: jax.Array, is_first: jax.Array,
            key: jax.Array, step: jax.Array, explore: bool) -> tuple[jax.Array, Any]:
        carry = frame_stack.push(carry, obs, is_first, self.cfg.frame_stack_pad)
        k_noise, k_coin, k_random = jax.random.split(key, 3)
        q = self.q_values(state.nets["online"], frame_stack.stacked(carry),
                          k_noise if explore else None)
        greedy = jnp.argmax(q, axis=-1).astype(jnp.int32)
        epsilon = self.epsilon_schedule(step) if explore else self.cfg.eval_epsilon
        num_envs = greedy.shape[0]
        random = jax.random.randint(k_random, (num_envs,), 0, self.num_actions, jnp.int32)
        explore_now = jax.random.uniform(k_coin, (num_envs,)) < epsilon
        return jnp.where(explore_now, random, greedy), carry

    # ------------------------------------------------------------------ learning
    def sample(self, replay: Any, key: jax.Array) -> Any:
        """``Transitions`` (prioritised), or ``TransitionWindows`` when an objective needs a
        window; n-step returns from per-step rewards clipped to ``cfg.reward_clip``."""
        cfg, horizon = self.cfg, self.window
        if horizon:
            batch = replay_lib.sample_transition_windows(
                replay, key, cfg.batch_size, cfg.n_step, cfg.gamma, cfg.frame_stack, horizon,
                full_window=False, sampler=self.sampler, pad=cfg.frame_stack_pad)
            tr = batch.transition
        else:
            batch = tr = replay_lib.sample_transitions(replay, key, cfg.batch_size, cfg.n_step,
                                                       cfg.gamma, cfg.frame_stack, self.sampler,
                                                       pad=cfg.frame_stack_pad)
        if cfg.reward_clip:
            tr = clip_n_step_rewards(replay, tr, cfg.n_step, cfg.gamma, cfg.reward_clip)
        return batch.replace(transition=tr) if horizon else tr

    def update(self, state: RainbowState, batch: Any, key: jax.Array,
               step: jax.Array) -> tuple[RainbowState, Metrics]:
        state, metrics, _ = self.update_with_priorities(state, batch, key, step)
        return state, metrics

    def write_priorities(self, replay: Any, batch: Any, priorities: jax.Array) -> Any:
        """``batch``'s transitions set to ``priorities`` (the replay unchanged without PER)."""
        if not self.cfg.prioritized:
            return replay
        tr = _transition(batch)
        # "one": the max is never raised, so new rows keep the buffer's initial priority 1
        return replay_lib.update_priorities(replay, tr.env_index, tr.slot, priorities,
                                            track_max=self.cfg.replay_new_priority == "max")

    def target_distribution(self, state: RainbowState, tr: Any, next_images: jax.Array,
                            online_key: jax.Array | None,
                            target_key: jax.Array | None) -> jax.Array:
        """The projected C51 target ``[B, N]`` (no gradient) for prepared ``next_images``."""
        nets = self.nets
        online, target = state.nets["online"], state.nets["target"]
        target_logits = nets.logits(target, nets.encode(target, next_images), target_key)
        target_probs = jax.nn.softmax(target_logits, axis=-1)
        if self.cfg.double_q:
            online_logits = nets.logits(online, nets.encode(online, next_images), online_key)
            next_action = jnp.argmax(nets.q_values(online_logits), axis=-1)
        else:
            next_action = jnp.argmax(jnp.sum(target_probs * nets.support, axis=-1), axis=-1)
        return c51_target(tr.reward.astype(jnp.float32), tr.discount.astype(jnp.float32),
                          select_distribution(target_probs, next_action), nets.support)

    def update_with_priorities(self, state: RainbowState, batch: Any, key: jax.Array,
                               step: jax.Array) -> tuple[RainbowState, Metrics, jax.Array]:
        """One update; also returns the new priorities ``[B]`` of ``batch``'s transitions."""
        cfg, nets, modules = self.cfg, self.nets, self.modules
        step = jnp.asarray(step)
        tr = _transition(batch)
        k_obs, k_next, k_online, k_target, k_aux = jax.random.split(key, 5)
        images = nets.prepare(tr.obs, k_obs)
        next_images = nets.prepare(tr.next_obs, k_next)
        action = tr.action.astype(jnp.int32).reshape(-1)
        target = self.target_distribution(state, tr, next_images, k_online, k_target)
        beta = self.beta_schedule(step)
        weights = (importance_weights(tr.prob, beta) if cfg.prioritized
                   else jnp.ones_like(tr.prob, jnp.float32))
        slots = state.objectives
        obj_keys = jax.random.split(k_aux, max(len(self.objectives), 1))

        def loss_fn(params, obj_params):
            latent = nets.encode(params, images)
            logits = nets.logits(params, latent, k_online)
            cross_entropy, kl = c51_loss(logits, action, target)
            c51_weights = modules.sample_weights(state.modules, WeightInputs(
                "c51", batch, jax.lax.stop_gradient(latent), step))
            per_sample = cross_entropy if c51_weights is None else c51_weights * cross_entropy
            metrics = {}
            inputs = self.objective_inputs(batch, latent, params, state.nets["target"], step)
            for o, k in zip(self.objectives, obj_keys):
                maps, obj_metrics = o.loss(obj_params[o.name], slots.states[o.name], inputs, k)
                total = objectives_lib.scaled(o, maps)
                per_sample = per_sample + total
                metrics |= objectives_lib.named_metrics(o, maps, obj_metrics, total)
            q = jnp.take_along_axis(nets.q_values(jax.lax.stop_gradient(logits)),
                                    action[:, None], axis=1)
            metrics |= {"cross_entropy": jnp.mean(cross_entropy), "kl": jnp.mean(kl),
                        "q_mean": jnp.mean(q)}
            return jnp.mean(weights * per_sample), (kl, metrics)

        (loss, (priorities, metrics)), (grads, obj_grads) = jax.value_and_grad(
            loss_fn, argnums=(0, 1), has_aux=True)(state.nets["online"], slots.params)
        updates, opt_state = self.opt.update(grads, state.opt_states["online"],
                                             state.nets["online"])
        params = optax.apply_updates(state.nets["online"], updates)
        obj_params, obj_opt_states = {}, {}
        for name, g in obj_grads.items():
            updates, obj_opt_states[name] = self.opt.update(g, slots.opt_states[name],
                                                            slots.params[name])
            obj_params[name] = optax.apply_updates(slots.params[name], updates)
            metrics[f"{name}/grad_norm"] = optax.global_norm(g)

        count = state.update_count + 1
        due = count % cfg.target_update_period == 0
        blended = optax.incremental_update(params, state.nets["target"], cfg.target_tau)
        target_params = jax.tree.map(lambda new, old: jnp.where(due, new, old), blended,
                                     state.nets["target"])
        metrics |= {"loss": loss, "grad_norm": optax.global_norm(grads),
                    "target_q_mean": jnp.mean(jnp.sum(target * nets.support, axis=-1)),
                    "batch_reward": jnp.mean(tr.reward.astype(jnp.float32)),
                    "per_beta": jnp.asarray(beta, jnp.float32),
                    "is_weight_mean": jnp.mean(weights),
                    "epsilon": jnp.asarray(self.epsilon_schedule(step), jnp.float32)}
        obj_states = {o.name: o.update_state(slots.states[o.name], metrics)
                      for o in self.objectives}
        state = RainbowState(nets={"online": params, "target": target_params},
                             opt_states={"online": opt_state},
                             objectives=ObjectiveSlots(params=obj_params,
                                                       opt_states=obj_opt_states,
                                                       states=obj_states),
                             modules=state.modules, update_count=count)
        if modules.uses("after_update"):
            state = modules.after_update(state, jax.random.fold_in(key, 1), step)
        return state, metrics, jax.lax.stop_gradient(priorities)

    def objective_inputs(self, batch: Any, latent: jax.Array, params: Any, target_params: Any,
                         step: jax.Array) -> ObjectiveInputs:
        """What an objective's ``loss`` gets, closing over the params being differentiated."""
        nets = self.nets
        return ObjectiveInputs(
            batch=batch, features=latent,
            encode=lambda obs, key: nets.encode(params, nets.prepare(obs, key)),
            target_encode=lambda obs, key: jax.lax.stop_gradient(
                nets.encode(target_params, nets.prepare(obs, key))),
            extras={"project": lambda z: nets.project(params, z), "target_params": target_params},
            step=step)


def _transition(batch: Any) -> replay_lib.Transitions:
    return batch.transition if isinstance(batch, replay_lib.TransitionWindows) else batch
