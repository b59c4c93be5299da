"""Dense trunks for the world model, actor and critic (Dreamer style).

``DenseStack`` is ``layers x (Dense -> [LayerNorm] -> act)`` with no output layer: heads add their
own. Dreamer-v1 uses ELU and no normalisation; DreamerV3 uses LayerNorm + SiLU. Flax's default
initialisers are kept (LeCun-normal kernels, zero biases); Dreamer-v1 used Glorot-uniform (TF)
and the RePo port PyTorch's default — none of these choices is load-bearing.
(``rl.nets.MLP`` is DrQ-v2's MLP: orthogonal init, no normalisation, a fixed output layer.)
"""
from __future__ import annotations

from typing import Callable

import flax.linen as nn
import jax

ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "elu": nn.elu, "silu": nn.silu, "relu": nn.relu, "tanh": nn.tanh, "gelu": nn.gelu,
    "none": lambda x: x,
}
NORMS = ("none", "layer")


def activation(name: str) -> Callable[[jax.Array], jax.Array]:
    """The activation function called ``name``; a clear error for unknown names."""
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; valid: {sorted(ACTIVATIONS)}")
    return ACTIVATIONS[name]


def check_norm(name: str) -> str:
    if name not in NORMS:
        raise ValueError(f"unknown norm {name!r}; valid: {list(NORMS)}")
    return name


class NormAct(nn.Module):
    """Optional LayerNorm followed by an activation."""

    act: str = "elu"
    norm: str = "none"

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        if check_norm(self.norm) == "layer":
            x = nn.LayerNorm(epsilon=1e-3)(x)
        return activation(self.act)(x)


class DenseStack(nn.Module):
    """``layers`` times Dense(units) -> [LayerNorm] -> act. Works on any leading shape."""

    layers: int
    units: int
    act: str = "elu"
    norm: str = "none"

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        for i in range(self.layers):
            # LayerNorm makes the bias redundant (DreamerV3 omits it too)
            x = nn.Dense(self.units, use_bias=self.norm == "none", name=f"dense_{i}")(x)
            x = NormAct(self.act, self.norm, name=f"norm_act_{i}")(x)
        return x
