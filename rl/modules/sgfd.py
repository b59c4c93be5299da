"""SGFD: saliency-guided feature decorrelation by sample reweighting (Huang et al., NeurIPS 2023),
``module=sgfd``.

Every update, inside the jitted step and purely (``observe_activations``, then
``sample_weights``):

1. ``Z [B, d]``: the actor trunk's sown ``linear`` output (DrQ-v2's ``Linear`` of the
   Linear+LayerNorm+Tanh trunk, on stopped encoder features), standardised per sample (a
   LayerNorm without affine params; SGFD's ``Z`` is the actor encoder's LayerNorm output).
2. Saliency: an environment-identity classifier ``g: R^d -> softmax(E)`` (MLP d->h->h->E, ReLU;
   params and SGD-momentum state in this module's state) is differentiated w.r.t. ``Z`` with
   Guided Backprop (ReLU with the VJP ``1[x>0] * max(g, 0)``), per class ``e``; the mean over
   classes and samples of ``|dg_e/dZ|`` gives ``s = softmax(.) * saliency_scale`` over the
   feature dims and the pair weights ``M = s s^T``. The raw gradients are ``<< 1``, so the
   official softmax is near uniform (a faithful pitfall); ``saliency_normalise`` divides them
   by their mean first.
3. Random Fourier features per feature dim (``num_rff`` functions, fresh draw from the key at
   every inner step): ``u = Z_j w_k + c_jk``, min-max normalised over the feature axis per
   sample and function to ``[0, pi/2]``, ``phi = sqrt(2/K) [cos u, sin u]``.
4. Weighted decorrelation loss over ``X = [Z; Z_bank]`` with weights ``softmax([w; w_bank])``:
   ``sum_i sum_{j != k} M_jk C^(i)_jk^2`` (``C^(i)`` the weighted covariance of RFF function i).
5. The logits ``w`` (init 1) take ``inner_steps`` SGD-momentum steps (lr ``inner_lr``, times
   ``inner_lr_decay`` from step ``inner_decay_at``) on
   ``L_dec / sg(L_dec) + reg_coef * L_p / sg(L_p)``, ``L_p = sum softmax(w)^2``.
6. The sample weights are ``B * softmax(w)``: positive, mean 1 (so ``weighted_mean`` is SGFD's
   ``sum softmax(w) * loss``); they weigh the losses in ``target`` (``actor`` as the paper).
7. The memory bank is overwritten by ``(Z, w)`` for the first ``bank_warmup`` updates, then
   ``bank <- bank_ema * bank + (1 - bank_ema) * new``.
8. The classifier takes ``classifier_steps`` SGD steps (momentum, weight decay; cross-entropy on
   the softmax outputs, as the official code) on the current batch when
   ``step > classifier_start``, ``step % classifier_every == 0`` and its batch accuracy is below
   ``classifier_acc``. With ``labels=env_index`` reweighting is skipped (uniform weights) while
   its batch accuracy is 0 (the official gate).

Domain labels (``labels``): ``env_index`` takes ``batch.env_index % num_domains`` (DrQ-v2 hands
the batch's env index to the activation observers as ``activations["env_index"]``); this is a
domain label only when the parallel envs are different training environments (one domain per
env index; the generalisation env splits are a later step). ``none``: every sample is domain 0.
Without real domain labels (``none``, ``num_domains=1``, or identical parallel envs) the
classifier has nothing to learn and degenerates: its saliency is that of an (almost) untrained
net, the pair weights are near uniform, and SGFD reduces to plain (StableNet-style) RFF
decorrelation reweighting. This is also what the paper's agent does for its first 100k steps.

Deviations from the official code (noted, not hidden): the classifier trains on the current
batch (B samples) rather than 5 batches of 640; the saliency averages ``|G_e|`` over classes
(the signed mean of softmax-probability gradients cancels with plain backprop); the memory-bank
warm-up counts module updates, not env steps.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Mapping

import jax
import jax.numpy as jnp

from rl.modules.base import ModuleBase, WeightInputs

TARGETS = ("actor", "critic", "both")
LABELS = ("env_index", "none")


@dataclasses.dataclass(frozen=True)
class SGFDConfig:
    name: str = "sgfd"
    target: str = "actor"              # actor | critic | both: the losses the weights multiply
    labels: str = "env_index"          # env_index | none (see the module docstring)
    num_domains: int = 4               # E: classes of the environment classifier
    feature: str = "linear"            # the actor trunk's sown activation used as Z
    num_rff: int = 5                   # K random Fourier functions per dim (2K with cos + sin)
    inner_steps: int = 20              # SGD steps on the sample-weight logits
    inner_lr: float = 1.0
    inner_decay_at: int = 10           # the inner lr is multiplied by inner_lr_decay from here
    inner_lr_decay: float = 0.1
    inner_momentum: float = 0.9
    reg_coef: float = 5.0              # weight of sum softmax(w)^2 (both terms self-normalised)
    saliency_scale: float = 7.0        # the saliency distribution sums to this
    saliency_normalise: bool = False   # raw saliency / its mean before the softmax (not official)
    bank_ema: float = 0.9              # memory bank: old share after the warm-up
    bank_warmup: int = 10              # module updates that overwrite the bank
    classifier_hidden: int = 128
    classifier_lr: float = 0.01
    classifier_momentum: float = 0.9
    classifier_wd: float = 1e-4
    classifier_steps: int = 10
    classifier_start: int = 100_000    # agent step after which the classifier trains
    classifier_every: int = 20
    classifier_acc: float = 0.8        # ... while its batch accuracy is below this

    def __post_init__(self) -> None:
        def bad(field: str, want: str) -> ValueError:
            return ValueError(f"SGFDConfig.{field} must be {want}, got {getattr(self, field)!r}")
        if self.target not in TARGETS:
            raise bad("target", f"one of {list(TARGETS)}")
        if self.labels not in LABELS:
            raise bad("labels", f"one of {list(LABELS)}")
        for field in ("num_domains", "num_rff", "classifier_hidden"):
            if not (isinstance(getattr(self, field), int) and getattr(self, field) >= 1):
                raise bad(field, "an int >= 1")
        for field in ("inner_steps", "inner_decay_at", "bank_warmup", "classifier_steps",
                      "classifier_start"):
            if not (isinstance(getattr(self, field), int) and getattr(self, field) >= 0):
                raise bad(field, "an int >= 0")
        if not (isinstance(self.classifier_every, int) and self.classifier_every >= 1):
            raise bad("classifier_every", "an int >= 1")
        for field in ("inner_lr", "inner_lr_decay", "saliency_scale", "classifier_lr"):
            if not getattr(self, field) > 0:
                raise bad(field, "> 0")
        for field in ("reg_coef", "classifier_wd"):
            if not getattr(self, field) >= 0:
                raise bad(field, ">= 0")
        for field in ("inner_momentum", "bank_ema", "classifier_momentum", "classifier_acc"):
            if not 0.0 <= getattr(self, field) <= 1.0:
                raise bad(field, "in [0, 1]")

    @property
    def losses(self) -> tuple[str, ...]:
        return ("actor", "critic") if self.target == "both" else (self.target,)


# ---------------------------------------------------------------------------- pieces
def random_fourier_features(key: jax.Array, z: jax.Array, num_rff: int) -> jax.Array:
    """``[N, d] -> [N, d, 2K]`` float32: per dim ``u = z w_k + c_jk`` (``w ~ N(0, 1)``,
    ``c ~ U[0, 2pi)``), min-max normalised over the feature axis to ``[0, pi/2]``, then
    ``sqrt(2/K) [cos u, sin u]``."""
    k_w, k_c = jax.random.split(key)
    z = z.astype(jnp.float32)
    w = jax.random.normal(k_w, (num_rff,), jnp.float32)
    c = jax.random.uniform(k_c, (z.shape[-1], num_rff), jnp.float32, 0.0, 2.0 * math.pi)
    u = z[:, :, None] * w + c                                    # [N, d, K]
    lo, hi = u.min(axis=1, keepdims=True), u.max(axis=1, keepdims=True)
    u = (u - lo) / jnp.maximum(hi - lo, 1e-12) * (math.pi / 2)
    return math.sqrt(2.0 / num_rff) * jnp.concatenate([jnp.cos(u), jnp.sin(u)], axis=-1)


def weighted_covariances(phi: jax.Array, weights: jax.Array) -> jax.Array:
    """``[F, d, d]``: the covariance under ``weights [N]`` (summing to 1) of each RFF function."""
    mean = jnp.einsum("n,ndf->df", weights, phi)
    second = jnp.einsum("n,ndf,nef->fde", weights, phi, phi)
    return second - jnp.einsum("df,ef->fde", mean, mean)


def decorrelation_loss(phi: jax.Array, weights: jax.Array, pair: jax.Array) -> jax.Array:
    """``sum_i sum_{j != k} M_jk C^(i)_jk^2`` (``pair`` = M ``[d, d]``)."""
    cov = weighted_covariances(phi, weights)
    off = 1.0 - jnp.eye(pair.shape[0], dtype=cov.dtype)
    return jnp.sum(pair * off * cov ** 2)


def optimise_logits(key: jax.Array, z: jax.Array, bank_z: jax.Array, bank_logits: jax.Array,
                    pair: jax.Array, cfg: SGFDConfig) -> tuple[jax.Array, jax.Array]:
    """The sample-weight logits ``[B]`` after the inner SGD, and the final decorrelation loss."""
    x = jnp.concatenate([z, bank_z]).astype(jnp.float32)

    def losses(logits, k):
        phi = random_fourier_features(k, x, cfg.num_rff)
        dec = decorrelation_loss(phi, jax.nn.softmax(jnp.concatenate([logits, bank_logits])),
                                 pair)
        reg = jnp.sum(jax.nn.softmax(logits) ** 2)
        return dec, reg

    def objective(logits, k):
        dec, reg = losses(logits, k)
        return (dec / jax.lax.stop_gradient(jnp.maximum(dec, 1e-30))
                + cfg.reg_coef * reg / jax.lax.stop_gradient(reg))

    def step(carry, inputs):
        logits, velocity = carry
        i, k = inputs
        grad = jax.grad(objective)(logits, k)
        velocity = cfg.inner_momentum * velocity + grad          # torch SGD momentum
        lr = jnp.where(i < cfg.inner_decay_at, cfg.inner_lr, cfg.inner_lr * cfg.inner_lr_decay)
        return (logits - lr * velocity, velocity), None

    k_steps, k_final = jax.random.split(key)
    logits0 = jnp.ones(z.shape[:1], jnp.float32)
    (logits, _), _ = jax.lax.scan(step, (logits0, jnp.zeros_like(logits0)),
                                  (jnp.arange(cfg.inner_steps),
                                   jax.random.split(k_steps, cfg.inner_steps)))
    return logits, losses(logits, k_final)[0]


def weights_from_logits(logits: jax.Array) -> jax.Array:
    """``B * softmax(logits)``: positive, mean 1."""
    return logits.shape[0] * jax.nn.softmax(logits.astype(jnp.float32))


# ---------------------------------------------------------------------------- classifier
@jax.custom_vjp
def guided_relu(x: jax.Array) -> jax.Array:
    return jnp.maximum(x, 0.0)


def _guided_relu_fwd(x):
    return jnp.maximum(x, 0.0), x


def _guided_relu_bwd(x, g):
    return ((x > 0).astype(g.dtype) * jnp.maximum(g, 0.0),)


guided_relu.defvjp(_guided_relu_fwd, _guided_relu_bwd)


def init_classifier(key: jax.Array, dim: int, hidden: int, classes: int) -> dict:
    """MLP ``dim -> hidden -> hidden -> classes`` (torch ``nn.Linear``'s uniform init)."""
    sizes = [dim, hidden, hidden, classes]
    params = {}
    for i, (k, (fan_in, fan_out)) in enumerate(zip(jax.random.split(key, 3),
                                                   zip(sizes[:-1], sizes[1:]))):
        kw, kb = jax.random.split(k)
        bound = 1.0 / math.sqrt(fan_in)
        params[f"w{i}"] = jax.random.uniform(kw, (fan_in, fan_out), jnp.float32, -bound, bound)
        params[f"b{i}"] = jax.random.uniform(kb, (fan_out,), jnp.float32, -bound, bound)
    return params


def classifier_probs(params: dict, z: jax.Array, guided: bool = False) -> jax.Array:
    """Softmax outputs ``[N, E]``; ``guided``: Guided-Backprop ReLUs (saliency pass only)."""
    relu = guided_relu if guided else jax.nn.relu
    h = relu(z @ params["w0"] + params["b0"])
    h = relu(h @ params["w1"] + params["b1"])
    return jax.nn.softmax(h @ params["w2"] + params["b2"])


def raw_saliency(params: dict, z: jax.Array) -> jax.Array:
    """``[d]``: ``mean_{b,e} |GBP_e(z)_b|``, the Guided-Backprop gradient of each class's
    softmax output w.r.t. the features."""
    def class_prob(z, e):
        return classifier_probs(params, z, guided=True)[:, e].sum()

    classes = params["b2"].shape[0]
    grads = jax.vmap(lambda e: jax.grad(class_prob)(z, e))(jnp.arange(classes))   # [E, N, d]
    return jnp.abs(grads).mean(axis=(0, 1))


def saliency(params: dict, z: jax.Array, scale: float, normalise: bool = False) -> jax.Array:
    """``[d]``: ``softmax(raw) * scale`` (sums to ``scale``). The raw gradients of softmax
    outputs are small (``<< 1``; near 0 once the classifier is confident), so the official
    ``softmax(raw)`` is close to uniform; ``normalise`` divides ``raw`` by its mean first (a
    scale-free sharpening, not in the official code)."""
    raw = raw_saliency(params, z)
    if normalise:
        raw = raw / jnp.maximum(raw.mean(), 1e-30)
    return jax.nn.softmax(raw) * scale


def accuracy(params: dict, z: jax.Array, labels: jax.Array) -> jax.Array:
    return jnp.mean(jnp.argmax(classifier_probs(params, z), -1) == labels)


def train_classifier(params: dict, velocity: dict, z: jax.Array, labels: jax.Array,
                     cfg: SGFDConfig) -> tuple[dict, dict]:
    """``classifier_steps`` torch-style SGD steps (momentum, weight decay) on the cross-entropy
    of the softmax outputs (a double softmax, as the official code)."""
    def loss(p):
        probs = classifier_probs(p, z)
        logp = jax.nn.log_softmax(probs)
        return -jnp.mean(jnp.take_along_axis(logp, labels[:, None], axis=-1))

    def step(carry, _):
        p, v = carry
        g = jax.tree.map(lambda gi, pi: gi + cfg.classifier_wd * pi, jax.grad(loss)(p), p)
        v = jax.tree.map(lambda vi, gi: cfg.classifier_momentum * vi + gi, v, g)
        p = jax.tree.map(lambda pi, vi: pi - cfg.classifier_lr * vi, p, v)
        return (p, v), None

    (params, velocity), _ = jax.lax.scan(step, (params, velocity), None,
                                         length=cfg.classifier_steps)
    return params, velocity


def standardise(x: jax.Array) -> jax.Array:
    x = x.astype(jnp.float32)
    mean = x.mean(-1, keepdims=True)
    return (x - mean) / jnp.sqrt(x.var(-1, keepdims=True) + 1e-5)


# ---------------------------------------------------------------------------- module
@dataclasses.dataclass(frozen=True, eq=False)
class SGFDModule(ModuleBase):
    Config = SGFDConfig
    hosts = ("drqv2",)    # reads the actor trunk's sown features and the batch env index

    def __post_init__(self) -> None:
        name = getattr(self.host, "name", None)
        if self.host is not None and name not in self.hosts:
            raise ValueError(f"module 'sgfd' runs on {list(self.hosts)} (it reads DrQ-v2's "
                             f"actor trunk features and batch env index), not agent={name}")

    @property
    def requires(self) -> frozenset[str]:
        return frozenset({"activations"} | {f"sample_weights:{l}" for l in self.cfg.losses})

    def _dim(self, host: Any) -> int:
        dim = getattr(getattr(host, "cfg", None), "feature_dim", None)
        if dim is None:
            raise ValueError(f"module 'sgfd' needs the host's feature_dim (the actor trunk's "
                             f"width); agent {getattr(host, 'name', host)!r} has none")
        return int(dim)

    def init(self, key: jax.Array, host: Any) -> dict:
        cfg = self.cfg
        dim, batch = self._dim(host), int(host.cfg.batch_size)
        params = init_classifier(key, dim, cfg.classifier_hidden, cfg.num_domains)
        return {"classifier": params,
                "velocity": jax.tree.map(jnp.zeros_like, params),
                "bank_z": jnp.zeros((batch, dim), jnp.float32),
                "bank_logits": jnp.ones((batch,), jnp.float32),
                "logits": jnp.ones((batch,), jnp.float32),
                "count": jnp.zeros((), jnp.int32),
                "key": jax.random.fold_in(key, 1)}

    def features(self, activations: Mapping[str, Any]) -> jax.Array:
        actor = activations["actor"]
        trunk = actor.get("trunk", {}) if isinstance(actor, Mapping) else {}
        if self.cfg.feature not in trunk:
            raise ValueError(f"module 'sgfd': no sown trunk activation {self.cfg.feature!r} "
                             f"in the actor's (have {sorted(trunk)})")
        value = trunk[self.cfg.feature]
        return jax.lax.stop_gradient(value[0] if isinstance(value, tuple) else value)

    def labels(self, activations: Mapping[str, Any], batch: int) -> jax.Array:
        if self.cfg.labels == "none" or "env_index" not in activations:
            if self.cfg.labels == "env_index" and "env_index" not in activations:
                raise ValueError("module 'sgfd' with labels=env_index needs the host to hand "
                                 "activations['env_index']; use labels=none otherwise")
            return jnp.zeros((batch,), jnp.int32)
        return jnp.asarray(activations["env_index"]).reshape(batch).astype(jnp.int32) \
            % self.cfg.num_domains

    def observe_activations(self, state: dict, activations: Mapping[str, Any],
                            step: jax.Array) -> tuple[dict, dict]:
        cfg = self.cfg
        z = standardise(self.features(activations))
        labels = self.labels(activations, z.shape[0])
        key, k_inner, k_next = jax.random.split(state["key"], 3)
        del key
        if z.shape != state["bank_z"].shape:
            raise ValueError(f"module 'sgfd': features {z.shape} do not match the memory bank "
                             f"{state['bank_z'].shape} (batch_size x feature_dim of the host)")

        # classifier step (before the saliency, as the official agent)
        params, velocity = state["classifier"], state["velocity"]
        acc = accuracy(params, z, labels)
        step = jnp.asarray(step)
        train = (step > cfg.classifier_start) & (step % cfg.classifier_every == 0) & \
            (acc < cfg.classifier_acc)
        params, velocity = jax.lax.cond(
            train, lambda p, v: train_classifier(p, v, z, labels, cfg), lambda p, v: (p, v),
            params, velocity)

        s = saliency(params, z, cfg.saliency_scale, cfg.saliency_normalise)
        pair = jnp.outer(s, s)
        logits, dec = optimise_logits(k_inner, z, state["bank_z"], state["bank_logits"], pair,
                                      cfg)
        acc = accuracy(params, z, labels)
        if cfg.labels == "env_index":      # the official gate; meaningless without labels
            logits = jnp.where(acc > 0, logits, jnp.ones_like(logits))
        warm = state["count"] < cfg.bank_warmup
        ema = lambda old, new: jnp.where(warm, new, cfg.bank_ema * old + (1 - cfg.bank_ema) * new)
        weights = weights_from_logits(logits)
        new_state = {**state, "classifier": params, "velocity": velocity,
                     "bank_z": ema(state["bank_z"], z),
                     "bank_logits": ema(state["bank_logits"], logits),
                     "logits": logits, "count": state["count"] + 1, "key": k_next}
        metrics = {"decorrelation_loss": dec, "classifier_acc": acc,
                   "classifier_trained": train.astype(jnp.float32),
                   "saliency_max": s.max(), "weight_max": weights.max(),
                   "weight_min": weights.min()}
        return new_state, metrics

    def sample_weights(self, state: dict, inputs: WeightInputs) -> jax.Array:
        batch = inputs.features.shape[0]
        if state["logits"].shape[0] != batch:
            raise ValueError(f"module 'sgfd': weights for {state['logits'].shape[0]} samples, "
                             f"the {inputs.loss!r} loss has {batch}")
        return weights_from_logits(state["logits"])
