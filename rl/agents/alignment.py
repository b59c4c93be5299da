"""RePo's reward-free test-time alignment (Zhu et al. 2024; official ``CalibratedRePo`` in
zchuning/repo ``algorithms/repo/repo_adapt.py`` and ``common/models/gans.py``).

In a new visual domain only the pixel encoder is re-trained; the RSSM, reward head, actor and
critic stay frozen, and no reward is used. ``x_s = f(enc_src(o_s))`` are source features (the
frozen copy of the trained encoder on the source replay), ``x_t = f(enc_tgt(o_t))`` target ones
(the trained copy, initialised from the source encoder). ``f`` (``features``):
- ``"embed"`` (official): the encoder's embedding itself, the only input of the posterior that
  changes with the domain;
- ``"posterior"``: the features ``[h, z]`` of the posteriors that the frozen RSSM filters from
  those embeddings along replayed sequences (what the reward head and the policy read); the
  encoder's gradient then flows through the frozen RSSM.

Trained here (``AlignState``): the target encoder; a critic ``D`` with a variational bottleneck
(VDB: ``layers`` x Dense(units)+LeakyReLU -> Gaussian ``latent``-d code -> LeakyReLU -> Dense(1));
a density-ratio net ``tau(x) = exp(MLP(x))`` and its dual scalar ``u``. One ``update`` (one jit):

1. ``tau = tau(x_s)`` (before anything moves; used, stopped, by steps 2 and 5).
2. critic step (Adam), ``mode="support"`` (default; Pearson chi^2 with a re-weighted source):
   ``-E_s[tau D(x_s)] + E_t[D(x_t) + D(x_t)^2/4] + beta_D (KL_VDB - kl_target)
   + gp E_s ||grad_x D(x_s)||^2``; ``mode="distribution"``: JS (BCE) instead of the first two
   terms. ``KL_VDB`` is the mean over both batches of KL(N(mean, std) || N(0, 1)) of the code.
   ``beta_D <- max(0, beta_D + beta_lr (KL_VDB - kl_target))`` (plain dual ascent, not Adam).
3. encoder step (Adam) against the updated critic: ``aln_coef L_aln + pair_coef L_pair`` with
   ``L_aln = -E_t[D(x_t) + D(x_t)^2/4]`` (support) or ``BCE(D(x_t), 1)`` (distribution), and the
   paired-frame loss ``L_pair = -E log N(f(enc_src(o_src)); f(enc_tgt(o_tgt)), 1)`` on frames of
   the same simulator state rendered in both domains (official ``simple_pair`` calibration).
4. (support only) tau step (Adam): ``E_s[tau D(x_s)] + sg(u) (E_s[tau] - 1)``, D the updated
   critic: the source is re-weighted (mean-one) towards where the target already is, so the
   target only has to land inside the SUPPORT of the source features, not match their density.
5. (support only) u step (Adam): ``-u sg(E_s[tau] - 1)``.

Every D evaluation samples the VDB code (the official forward is always stochastic). Defaults
are the official ``adapt_repo.py`` values. Deviations: all dense layers get orthogonal init
(official: orthogonal in the MLPs, PyTorch default in the VDB's last layer); the encoder's Adam
can clip gradients (``encoder_grad_clip``, official: none).

``Aligner`` follows the agent protocol that ``rl.loop.make_update_fn`` fuses: ``sample(replays,
key)`` draws one ``AlignBatch`` inside the jit from ``{"source", "target", "pair"}`` replays
(``pair`` holds source and target frames stacked on the channel axis), ``update(state, batch,
key, step)`` is pure.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from flax import struct

from rl import replay as replay_lib
from rl.core.batches import Sequences
from rl.core.nets import dense

Params = Any
MODES = ("support", "distribution")
FEATURES = ("embed", "posterior")
LEAKY_SLOPE = 0.01   # torch.nn.LeakyReLU's default
_LOG_2PI = math.log(2.0 * math.pi)


@dataclasses.dataclass(frozen=True)
class AlignmentConfig:
    mode: str = "support"            # support (chi^2 + density ratio) | distribution (JS GAN)
    features: str = "embed"          # embed (official) | posterior ([h, z] through the RSSM)
    batch_size: int = 50             # sequences per batch (each of source, target, pairs)
    length: int = 50                 # steps per sequence
    encoder_lr: float = 3e-4         # official: the model lr
    encoder_grad_clip: Optional[float] = None   # None: no clipping (official)
    aln_coef: float = 1.0
    pair_coef: float = 1.0           # paired-frame loss (official calib_coef); 0 turns it off
    critic_units: int = 256          # f_hidden_size
    critic_layers: int = 4
    critic_latent: int = 64          # f_latent_size
    critic_lr: float = 3e-4          # f_lr
    vdb_target_kl: float = 0.1       # f_target_kl
    vdb_init_beta: float = 0.1
    vdb_beta_lr: float = 5e-3
    gp_weight: float = 1.0           # zero-centred gradient penalty on source features
    tau_lr: float = 5e-5
    u_lr: float = 5e-3
    init_u: float = 1e-4

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"alignment.mode={self.mode!r}; valid: {list(MODES)}")
        if self.features not in FEATURES:
            raise ValueError(f"alignment.features={self.features!r}; valid: {list(FEATURES)}")
        for name in ("batch_size", "length", "critic_units", "critic_layers", "critic_latent"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"alignment.{name}={value!r}; must be an int >= 1")
        for name in ("encoder_lr", "critic_lr", "tau_lr", "u_lr"):
            if not getattr(self, name) > 0.0:
                raise ValueError(f"alignment.{name}={getattr(self, name)!r}; must be > 0")
        for name in ("aln_coef", "pair_coef", "vdb_target_kl", "vdb_init_beta", "vdb_beta_lr",
                     "gp_weight"):
            if not getattr(self, name) >= 0.0:
                raise ValueError(f"alignment.{name}={getattr(self, name)!r}; must be >= 0")
        if self.encoder_grad_clip is not None and not self.encoder_grad_clip > 0.0:
            raise ValueError(f"alignment.encoder_grad_clip={self.encoder_grad_clip!r}; must be "
                             "> 0 or null (no clipping)")


# ---- networks ---------------------------------------------------------------------------------
class VDBCritic(nn.Module):
    """``x [N, D]`` -> ``(D(x) [N], mean [N, L], logstd [N, L])``; ``noise [N, L]`` samples the
    code ``mean + noise * exp(logstd)`` (``None``: the mean, deterministic)."""

    units: int = 256
    layers: int = 4
    latent: int = 64

    @nn.compact
    def __call__(self, x: jax.Array, noise: jax.Array | None = None):
        h = x
        for i in range(self.layers):
            h = nn.leaky_relu(dense(self.units, name=f"dense_{i}")(h), LEAKY_SLOPE)
        mean, logstd = jnp.split(dense(2 * self.latent, name="code")(h), 2, axis=-1)
        code = mean if noise is None else mean + noise * jnp.exp(logstd)
        out = dense(1, name="out")(nn.leaky_relu(code, LEAKY_SLOPE))
        return out[..., 0], mean, logstd


class LogDensityRatio(nn.Module):
    """``x [N, D]`` -> ``log tau(x) [N]`` (official: MLP with ReLU, 4 x 256)."""

    units: int = 256
    layers: int = 4

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        for i in range(self.layers):
            x = nn.relu(dense(self.units, name=f"dense_{i}")(x))
        return dense(1, name="out")(x)[..., 0]


# ---- losses (pure; hand-checked in tests/test_align.py) ---------------------------------------
def bce_with_logits(logits: jax.Array, target: float) -> jax.Array:
    """Mean binary cross-entropy of ``logits`` against a constant label."""
    return jnp.mean(optax.sigmoid_binary_cross_entropy(logits, jnp.full_like(logits, target)))


def chi2_critic_terms(d_source: jax.Array, d_target: jax.Array,
                      tau: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``(-E_s[tau D], E_t[D + D^2/4])``: the critic minimises their sum (support mode)."""
    return -jnp.mean(tau * d_source), jnp.mean(d_target + 0.25 * d_target ** 2)


def js_critic_terms(d_source: jax.Array, d_target: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``(BCE(D_s, 1), BCE(D_t, 0))`` (distribution mode)."""
    return bce_with_logits(d_source, 1.0), bce_with_logits(d_target, 0.0)


def alignment_loss(d_target: jax.Array, mode: str) -> jax.Array:
    """The encoder's adversarial loss on target critic values ``[N]``."""
    if mode == "support":
        return -jnp.mean(d_target + 0.25 * d_target ** 2)
    if mode == "distribution":
        return bce_with_logits(d_target, 1.0)
    raise ValueError(f"alignment mode={mode!r}; valid: {list(MODES)}")


def vdb_kl(mean: jax.Array, logstd: jax.Array) -> jax.Array:
    """``KL(N(mean, exp(logstd)) || N(0, I))`` per row ``[N]`` (summed over the code)."""
    return jnp.sum(-logstd + 0.5 * (jnp.exp(2.0 * logstd) + mean ** 2) - 0.5, axis=-1)


def vdb_beta_step(beta: jax.Array, kl: jax.Array, target_kl: float, lr: float) -> jax.Array:
    """Dual ascent on the bottleneck weight, clipped at 0 (official ``VDBDiscriminator``)."""
    return jnp.maximum(beta + lr * jax.lax.stop_gradient(kl - target_kl), 0.0)


def gradient_penalty(fn: Callable[[jax.Array], jax.Array], x: jax.Array) -> jax.Array:
    """Zero-centred penalty ``mean_i ||d fn(x)_i / d x_i||^2`` for a row-wise ``fn: [N, D] ->
    [N]`` (Mescheder et al. 2018)."""
    grads = jax.grad(lambda inputs: jnp.sum(fn(inputs)))(x)
    return jnp.mean(jnp.sum(grads.reshape(grads.shape[0], -1) ** 2, axis=-1))


def tau_objective(tau: jax.Array, d_source: jax.Array, u: jax.Array) -> jax.Array:
    """``E_s[tau D] + sg(u) (E_s[tau] - 1)``, minimised over tau's params."""
    return jnp.mean(tau * d_source) + jax.lax.stop_gradient(u) * (jnp.mean(tau) - 1.0)


def u_objective(u: jax.Array, tau: jax.Array) -> jax.Array:
    """``-u sg(E[tau] - 1)``: u rises while the mean ratio is above one."""
    return -u * jax.lax.stop_gradient(jnp.mean(tau) - 1.0)


def pair_nll(source: jax.Array, target: jax.Array) -> jax.Array:
    """``-log N(source; target, 1)`` averaged over every element (official ``simple_pair``:
    ``-Normal(tgt, 1).log_prob(src).mean()``); the source side is stopped."""
    diff = jax.lax.stop_gradient(source) - target
    return jnp.mean(0.5 * diff ** 2 + 0.5 * _LOG_2PI)


# ---- state and update -------------------------------------------------------------------------
@struct.dataclass
class AlignState:
    source: Params          # the trained world-model params: frozen (source encoder, RSSM, heads)
    encoder: Params         # the target encoder, trained (starts as a copy of source["encoder"])
    encoder_opt: Any
    critic: Params
    critic_opt: Any
    vdb_beta: jax.Array
    tau: Params
    tau_opt: Any
    u: jax.Array
    u_opt: Any


@struct.dataclass
class AlignBatch:
    source: Sequences            # source-domain sequences [B, T]
    target: Sequences            # target-domain sequences [B, T]
    pair: Optional[Sequences]    # [B, T, H, W, 2C]: source | target frames, or None


class Aligner:
    """Alignment of one world model's encoder; see the module docstring."""

    def __init__(self, cfg: AlignmentConfig, world_model: Any):
        self.cfg = cfg
        self.wm = world_model
        self.channels = world_model.image_shape[-1]
        self.feature_size = (world_model.embed_size if cfg.features == "embed"
                             else world_model.feat_size)
        self.min_replay_steps = cfg.length
        self.critic = VDBCritic(cfg.critic_units, cfg.critic_layers, cfg.critic_latent)
        self.ratio = LogDensityRatio(cfg.critic_units, cfg.critic_layers)
        encoder_opt = optax.adam(cfg.encoder_lr)
        if cfg.encoder_grad_clip is not None:
            encoder_opt = optax.chain(optax.clip_by_global_norm(cfg.encoder_grad_clip),
                                      encoder_opt)
        self.encoder_opt = encoder_opt
        self.critic_opt = optax.adam(cfg.critic_lr)
        self.tau_opt = optax.adam(cfg.tau_lr)
        self.u_opt = optax.adam(cfg.u_lr)

    def init(self, key: jax.Array, wm_params: Params) -> AlignState:
        critic_key, tau_key = jax.random.split(key)
        x = jnp.zeros((1, self.feature_size), jnp.float32)
        # copies: the update donates its state, which must not alias the caller's params
        source = jax.tree.map(jnp.copy, wm_params)
        encoder = jax.tree.map(jnp.copy, wm_params["encoder"])
        critic = self.critic.init(critic_key, x)["params"]
        tau = self.ratio.init(tau_key, x)["params"]
        u = jnp.asarray(self.cfg.init_u, jnp.float32)
        return AlignState(source=source, encoder=encoder,
                          encoder_opt=self.encoder_opt.init(encoder), critic=critic,
                          critic_opt=self.critic_opt.init(critic),
                          vdb_beta=jnp.asarray(self.cfg.vdb_init_beta, jnp.float32), tau=tau,
                          tau_opt=self.tau_opt.init(tau), u=u, u_opt=self.u_opt.init(u))

    @staticmethod
    def adapted_params(state: AlignState) -> Params:
        """World-model params with the target encoder in place of the source one."""
        return {**state.source, "encoder": state.encoder}

    # ---- batches -------------------------------------------------------------------------------
    def sample(self, replays: dict[str, Any], key: jax.Array) -> AlignBatch:
        """One batch from ``{"source", "target", "pair" (or None)}`` replays (jittable)."""
        keys = jax.random.split(key, 3)
        b, t = self.cfg.batch_size, self.cfg.length
        pair = replays.get("pair")
        return AlignBatch(
            source=replay_lib.sample_sequences(replays["source"], keys[0], b, t),
            target=replay_lib.sample_sequences(replays["target"], keys[1], b, t),
            pair=None if pair is None else replay_lib.sample_sequences(pair, keys[2], b, t))

    def features(self, params: Params, obs: jax.Array, seq: Any, key: jax.Array) -> jax.Array:
        """``obs [B, T, H, W, C]`` (with ``seq``'s actions and ``is_first``) -> ``x [B*T, D]``."""
        if self.cfg.features == "embed":
            x = self.wm.embed(params, obs)
        else:
            _, out = self.wm.observe(params, self.wm.initial(obs.shape[0]),
                                     dataclasses.replace(seq, obs=obs), key)
            x = out.feats
        return x.reshape(-1, x.shape[-1])

    def split_pair(self, obs: jax.Array) -> tuple[jax.Array, jax.Array]:
        """``[..., 2C]`` paired frames -> (source ``[..., C]``, target ``[..., C]``)."""
        c = self.channels
        if obs.shape[-1] != 2 * c:
            raise ValueError(f"paired frames need {2 * c} channels (source | target), got "
                             f"{obs.shape[-1]}")
        return obs[..., :c], obs[..., c:]

    def critic_values(self, critic: Params, x: jax.Array, key: jax.Array):
        noise = jax.random.normal(key, (x.shape[0], self.cfg.critic_latent), x.dtype)
        return self.critic.apply({"params": critic}, x, noise)

    # ---- losses on params ----------------------------------------------------------------------
    def critic_loss(self, critic: Params, x_source: jax.Array, x_target: jax.Array,
                    tau: jax.Array, beta: jax.Array, key: jax.Array):
        """The critic's loss on stopped features; aux: its terms (``kl`` drives ``beta``)."""
        cfg = self.cfg
        source_key, target_key = jax.random.split(key)
        d_s, mean_s, logstd_s = self.critic_values(critic, x_source, source_key)
        d_t, mean_t, logstd_t = self.critic_values(critic, x_target, target_key)
        if cfg.mode == "support":
            real, fake = chi2_critic_terms(d_s, d_t, tau)
        else:
            real, fake = js_critic_terms(d_s, d_t)
        kl = 0.5 * (jnp.mean(vdb_kl(mean_s, logstd_s)) + jnp.mean(vdb_kl(mean_t, logstd_t)))
        gp = jnp.zeros((), jnp.float32)
        if cfg.gp_weight > 0.0:
            noise = jax.random.normal(source_key, (x_source.shape[0], cfg.critic_latent))
            gp = cfg.gp_weight * gradient_penalty(
                lambda x: self.critic.apply({"params": critic}, x, noise)[0], x_source)
        loss = real + fake + jax.lax.stop_gradient(beta) * (kl - cfg.vdb_target_kl) + gp
        return loss, {"loss_source": real, "loss_target": fake, "kl": kl, "gp": gp,
                      "d_source": jnp.mean(d_s), "d_target": jnp.mean(d_t)}

    def pair_loss(self, encoder: Params, source: Params, pair: Any,
                  key: jax.Array) -> jax.Array:
        """``L_pair`` of paired sequences; both halves share ``key`` (the same posterior noise)."""
        obs_source, obs_target = self.split_pair(pair.obs)
        x_source = self.features(source, obs_source, pair, key)
        x_target = self.features({**source, "encoder": encoder}, obs_target, pair, key)
        return pair_nll(x_source, x_target)

    # ---- the update ----------------------------------------------------------------------------
    def update(self, state: AlignState, batch: AlignBatch, key: jax.Array,
               step: Any = None) -> tuple[AlignState, dict[str, jax.Array]]:
        """One alignment update (pure; jit it with ``state`` donated)."""
        del step
        cfg, sg = self.cfg, jax.lax.stop_gradient
        keys = jax.random.split(key, 6)
        x_s = sg(self.features(state.source, batch.source.obs, batch.source, keys[0]))
        x_t, target_vjp = jax.vjp(
            lambda enc: self.features({**state.source, "encoder": enc}, batch.target.obs,
                                      batch.target, keys[1]), state.encoder)
        tau = jnp.exp(self.ratio.apply({"params": state.tau}, x_s))

        # 1. critic (VDB), then its bottleneck weight
        (_, critic_aux), grads = jax.value_and_grad(self.critic_loss, has_aux=True)(
            state.critic, x_s, sg(x_t), sg(tau), state.vdb_beta, keys[2])
        updates, critic_opt = self.critic_opt.update(grads, state.critic_opt, state.critic)
        critic = optax.apply_updates(state.critic, updates)
        vdb_beta = vdb_beta_step(state.vdb_beta, critic_aux["kl"], cfg.vdb_target_kl,
                                 cfg.vdb_beta_lr)

        # 2. encoder against the updated critic (+ the paired-frame loss)
        enc_keys = jax.random.split(keys[3])
        aln, grad_x = jax.value_and_grad(lambda x: alignment_loss(
            self.critic_values(critic, x, enc_keys[0])[0], cfg.mode))(x_t)
        (grads,) = target_vjp(cfg.aln_coef * grad_x)
        metrics = {"encoder/align_loss": aln}
        loss = cfg.aln_coef * aln
        if batch.pair is not None:
            pair, pair_grads = jax.value_and_grad(self.pair_loss)(
                state.encoder, state.source, batch.pair, keys[4])
            grads = jax.tree.map(lambda g, p: g + cfg.pair_coef * p, grads, pair_grads)
            loss = loss + cfg.pair_coef * pair
            metrics["encoder/pair_loss"] = pair
        updates, encoder_opt = self.encoder_opt.update(grads, state.encoder_opt, state.encoder)
        encoder = optax.apply_updates(state.encoder, updates)
        metrics |= {"encoder/loss": loss, "encoder/grad_norm": optax.global_norm(grads),
                    "encoder/update_norm": optax.global_norm(updates)}

        # 3. density ratio and its dual (support mode)
        tau_params, tau_opt, u, u_opt = state.tau, state.tau_opt, state.u, state.u_opt
        if cfg.mode == "support":
            d_s = sg(self.critic_values(critic, x_s, keys[5])[0])
            tau_loss, grads = jax.value_and_grad(lambda p: tau_objective(
                jnp.exp(self.ratio.apply({"params": p}, x_s)), d_s, state.u))(state.tau)
            updates, tau_opt = self.tau_opt.update(grads, state.tau_opt, state.tau)
            tau_params = optax.apply_updates(state.tau, updates)
            grad_u = jax.grad(u_objective)(state.u, tau)
            updates, u_opt = self.u_opt.update(grad_u, state.u_opt, state.u)
            u = optax.apply_updates(state.u, updates)
            metrics |= {"tau/loss": tau_loss, "tau/mean": jnp.mean(tau), "tau/u": u}

        metrics |= {f"critic/{k}": v for k, v in critic_aux.items()}
        metrics |= {"critic/beta": vdb_beta,
                    # distance between the batch means of the two feature sets, per dimension
                    "features/mean_gap": jnp.sqrt(jnp.mean(
                        (jnp.mean(x_t, 0) - jnp.mean(x_s, 0)) ** 2))}
        state = state.replace(encoder=encoder, encoder_opt=encoder_opt, critic=critic,
                              critic_opt=critic_opt, vdb_beta=vdb_beta, tau=tau_params,
                              tau_opt=tau_opt, u=u, u_opt=u_opt)
        return state, metrics
