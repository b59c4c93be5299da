"""Data-efficient Rainbow hyper-parameters: defaults = SPR's Rainbow base (mila-iqia/spr).

This is the tuned DER inside SPR's code (n = 10, target = online copy every update, 2 updates
per env step), not van Hasselt et al.'s original DER; cards/repo_spr_taco_infopower.md, section 2.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Dict

from rl.core.schedules import parse_schedule
from rl.core.patch_conv import CONV_IMPLS, PADDINGS
from rl.modules.base import declare_host

# the module call sites this agent offers (rl.modules.base.CALL_SITES), declared where its
# config is, so a config is checked against them before the agent is imported
PROVIDES = frozenset({"sample_weights:c51", "after_update"})
declare_host("rainbow", PROVIDES)

# the switches against the official code (docs/FAITHFULNESS.md, SPR): defaults are official
NEW_PRIORITIES = ("one", "max")
NOISY_BIAS_SIGMAS = ("out", "in")
FRAME_STACK_PADS = ("zero", "repeat")


@dataclasses.dataclass(frozen=True)
class RainbowConfig:
    # optimiser: Adam on every parameter, gradient norm clipped (SPR: 10; BBF: none)
    lr: float = 1e-4
    adam_eps: float = 1.5e-4
    max_grad_norm: float = 10.0
    batch_size: int = 32
    # returns: per-step rewards clipped to [-reward_clip, reward_clip] (0: raw rewards)
    n_step: int = 10
    gamma: float = 0.99
    reward_clip: float = 1.0
    # C51
    num_atoms: int = 51
    v_min: float = -10.0
    v_max: float = 10.0
    double_q: bool = True                # next action from the online net, valued by the target
    # networks: Nature CNN (SPR's PyTorch encoder: no padding, 84x84 -> 7x7x64)
    frame_stack: int = 4
    encoder_channels: tuple[int, ...] = (32, 64, 64)
    encoder_kernels: tuple[int, ...] = (8, 4, 3)
    encoder_strides: tuple[int, ...] = (4, 2, 1)
    encoder_padding: str = "VALID"
    # convolutions (encoder, SPR's transition model): "patches" (strided slices + one matmul;
    # vmapped seeds get batched matmuls, not grouped convolutions) or "xla" (lax.conv, cuDNN).
    # The same function; patches is faster (H200, fused SPR step: 3 seeds 8.73 -> 5.45 ms, 1
    # seed 3.85 -> 3.26 ms; results/bench/README.md). rl/core/patch_conv.py
    conv: str = "patches"
    renormalize: bool = True             # per-sample min-max of the encoder output (SPR)
    hidden_dim: int = 256                # per stream of the dueling head
    dueling: bool = True
    noisy: bool = True                   # factorised Gaussian noisy layers in the head
    noisy_sigma0: float = 0.5
    # noisy bias sigma at init: sigma0 / sqrt(out_features) as SPR's NoisyLinear (Kaixhin's
    # Rainbow) does, or "in": sigma0 / sqrt(in_features) as Fortunato et al. write it
    noisy_bias_sigma: str = "out"
    # gradient from the dueling head into the encoder scaled by this (rlpyt's dueling head:
    # scale_grad(input, 2 ** -0.5), the two streams' gradients summing to ~one stream's);
    # SPR's projection is not scaled. 1.0: unscaled
    dueling_grad_scale: float = 2 ** -0.5
    # frame-stack slots before an episode's first frame: "zero" (rlpyt zeroes them, also after
    # a life loss) or "repeat" the first frame (DrQ-v2); acting and replay alike
    frame_stack_pad: str = "zero"
    # target network: every `period` updates, target <- tau * online + (1 - tau) * target
    target_update_period: int = 1        # SPR: a copy after every update (BBF: EMA tau 0.005)
    target_tau: float = 1.0
    # prioritised replay: sampling prob ~ priority^alpha, priority = KL(target || online)
    prioritized: bool = True
    per_alpha: float = 0.5
    per_beta_schedule: str = "linear(0.4,1.0,100000)"   # IS exponent, in agent steps
    # priority of rows new to the replay: "one" (rlpyt's default_priority 1, SPR) or "max", the
    # largest priority written so far (Schaul et al.; what this agent did before session 24)
    replay_new_priority: str = "one"
    # exploration, in agent steps (on top of noisy nets); eval acts eps-greedy with eval_epsilon
    epsilon_schedule: str = "linear(1.0,0.0,2001)"
    eval_epsilon: float = 0.001
    # augmentation of every encoded frame stack in the update (SPR: shift 4 + intensity 0.05)
    augment: bool = True
    shift_pad: int = 4
    intensity_scale: float = 0.05
    # representation objectives keyed by name, in composition order (``objective=[spr]``), and
    # modules keyed by name (``module=[...]``, rl/modules); empty: plain Rainbow
    objectives: Dict[str, Any] = dataclasses.field(default_factory=dict)
    modules: Dict[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        positive = {"lr": self.lr, "adam_eps": self.adam_eps, "max_grad_norm": self.max_grad_norm,
                    "batch_size": self.batch_size, "n_step": self.n_step,
                    "frame_stack": self.frame_stack, "hidden_dim": self.hidden_dim,
                    "target_update_period": self.target_update_period}
        for name, value in positive.items():
            if isinstance(value, bool) or not value > 0:
                raise ValueError(f"RainbowConfig.{name} must be > 0, got {value!r}")
        non_negative = {"reward_clip": self.reward_clip, "per_alpha": self.per_alpha,
                        "shift_pad": self.shift_pad, "intensity_scale": self.intensity_scale,
                        "noisy_sigma0": self.noisy_sigma0}
        for name, value in non_negative.items():
            if not value >= 0:
                raise ValueError(f"RainbowConfig.{name} must be >= 0, got {value!r}")
        if isinstance(self.num_atoms, bool) or not isinstance(self.num_atoms, int) \
                or self.num_atoms < 2:
            raise ValueError(f"RainbowConfig.num_atoms must be an int >= 2, got {self.num_atoms!r}")
        if not self.v_min < self.v_max:
            raise ValueError(f"RainbowConfig needs v_min < v_max, got v_min={self.v_min!r}, "
                             f"v_max={self.v_max!r}")
        if not 0.0 < self.gamma <= 1.0:
            raise ValueError(f"RainbowConfig.gamma must be in (0, 1], got {self.gamma!r}")
        if not 0.0 < self.target_tau <= 1.0:
            raise ValueError(f"RainbowConfig.target_tau must be in (0, 1], got {self.target_tau!r}")
        if not 0.0 <= self.eval_epsilon <= 1.0:
            raise ValueError(f"RainbowConfig.eval_epsilon must be in [0, 1], "
                             f"got {self.eval_epsilon!r}")
        if self.noisy and not self.noisy_sigma0 > 0:
            raise ValueError(f"RainbowConfig.noisy_sigma0 must be > 0 with noisy=True, "
                             f"got {self.noisy_sigma0!r}")
        layers = {"encoder_channels": self.encoder_channels,
                  "encoder_kernels": self.encoder_kernels, "encoder_strides": self.encoder_strides}
        for name, values in layers.items():
            if len(values) == 0 or any(not isinstance(v, int) or v < 1 for v in values):
                raise ValueError(f"RainbowConfig.{name} must be positive ints, got {values!r}")
        if len({len(v) for v in layers.values()}) != 1:
            raise ValueError(f"RainbowConfig: encoder_channels, encoder_kernels and "
                             f"encoder_strides need one entry per layer, got "
                             f"{self.encoder_channels!r}, {self.encoder_kernels!r}, "
                             f"{self.encoder_strides!r}")
        if self.encoder_padding not in PADDINGS:
            raise ValueError(f"RainbowConfig.encoder_padding={self.encoder_padding!r}; valid: "
                             f"{list(PADDINGS)}")
        choices = {"replay_new_priority": NEW_PRIORITIES, "noisy_bias_sigma": NOISY_BIAS_SIGMAS,
                   "frame_stack_pad": FRAME_STACK_PADS}
        for name, valid in choices.items():
            if getattr(self, name) not in valid:
                raise ValueError(f"RainbowConfig.{name}={getattr(self, name)!r}; valid: "
                                 f"{list(valid)}")
        if isinstance(self.dueling_grad_scale, bool) or not self.dueling_grad_scale > 0:
            raise ValueError(f"RainbowConfig.dueling_grad_scale must be > 0, "
                             f"got {self.dueling_grad_scale!r}")
        if self.conv not in CONV_IMPLS:
            raise ValueError(f"RainbowConfig.conv={self.conv!r}; valid: {list(CONV_IMPLS)}")
        for name in ("per_beta_schedule", "epsilon_schedule"):   # bad strings fail here
            try:
                parse_schedule(getattr(self, name))
            except ValueError as error:
                raise ValueError(f"RainbowConfig.{name}: {error}") from None

    def validate(self, env: Any) -> None:
        """Against the env it will get (``rl.envs.registry.EnvDescription``), before anything is
        built: discrete actions, images the encoder can take, objectives and modules Rainbow
        can host."""
        from rl import modules
        from rl.agents import objectives
        from rl.core.nets import conv_output_size

        if not env.discrete:
            raise ValueError(f"agent=rainbow needs discrete actions; env.name={env.name} has "
                             f"continuous actions (use agent=drqv2 or agent=imagination)")
        height, width = env.obs_shape[:2]
        sides = [conv_output_size(side, self.encoder_kernels, self.encoder_strides,
                                  self.encoder_padding) for side in (height, width)]
        if min(sides) < 1:
            smallest = next(s for s in range(1, 4096) if conv_output_size(
                s, self.encoder_kernels, self.encoder_strides, self.encoder_padding) >= 1)
            raise ValueError(f"env.size={height}: {height}x{width} images are too small for "
                             f"Rainbow's encoder (kernels {list(self.encoder_kernels)}, strides "
                             f"{list(self.encoder_strides)}, {self.encoder_padding} padding); "
                             f"it needs env.size >= {smallest}")
        objectives.check_available(self.objectives, "rainbow")
        modules.check_configs(self.modules, "rainbow", PROVIDES)

    @classmethod
    def tiny(cls, **overrides) -> "RainbowConfig":
        """A small network for CPU tests on small images (e.g. 16x16 or 32x32)."""
        sizes = dict(encoder_channels=(8, 16), encoder_kernels=(4, 3), encoder_strides=(2, 2),
                     hidden_dim=32, batch_size=8, n_step=3, num_atoms=11, frame_stack=2)
        return cls(**{**sizes, **overrides})
