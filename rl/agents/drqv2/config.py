"""DrQ-v2 hyper-parameters (defaults: the official ``cfgs/config.yaml`` at medium difficulty)."""
from __future__ import annotations

import dataclasses
from typing import Any, Dict

from rl.core.schedules import parse_schedule
from rl.core.patch_conv import CONV_IMPLS
from rl.modules.base import declare_host

# the module call sites this agent offers (rl.modules.base.CALL_SITES), declared where its
# config is, so a config is checked against them before the agent is imported
PROVIDES = frozenset({"activations", "noise_std", "value_target", "sample_weights:critic",
                      "sample_weights:actor", "after_update"})
declare_host("drqv2", PROVIDES)

ENCODER_DTYPES = ("float32", "bfloat16")


@dataclasses.dataclass(frozen=True)
class DrQV2Config:
    lr: float = 1e-4                     # Adam, one optimiser each for encoder, actor, critic
    feature_dim: int = 50                # trunk output (DrM uses 100 on dog and humanoid)
    hidden_dim: int = 1024
    critic_target_tau: float = 0.01
    batch_size: int = 256
    n_step: int = 3
    gamma: float = 0.99
    stddev_schedule: str = "linear(1.0,0.1,500000)"   # in agent steps; see rl.core.schedules
    stddev_clip: float = 0.3
    num_expl_steps: int = 2000           # uniform random actions before this many agent steps
    frame_stack: int = 3
    encoder_channels: int = 32
    encoder_layers: int = 4
    shift_pad: int = 4                   # random-shift augmentation padding
    encoder_dtype: str = "float32"       # conv compute dtype: "float32" (official) | "bfloat16"
    encoder_conv: str = "xla"            # "xla" (cuDNN) | "patches" (slices + matmul, PatchConv)
    # representation objectives keyed by name, in composition order (``objective=[taco]``), and
    # modules keyed by name (``module=[...]``, rl/modules); empty: plain DrQ-v2
    objectives: Dict[str, Any] = dataclasses.field(default_factory=dict)
    modules: Dict[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        positive = {"lr": self.lr, "feature_dim": self.feature_dim, "hidden_dim": self.hidden_dim,
                    "batch_size": self.batch_size, "n_step": self.n_step,
                    "stddev_clip": self.stddev_clip, "frame_stack": self.frame_stack,
                    "encoder_channels": self.encoder_channels,
                    "encoder_layers": self.encoder_layers}
        for name, value in positive.items():
            if not value > 0:
                raise ValueError(f"DrQV2Config.{name} must be > 0, got {value!r}")
        if not 0.0 < self.critic_target_tau <= 1.0:
            raise ValueError(f"DrQV2Config.critic_target_tau must be in (0, 1], "
                             f"got {self.critic_target_tau!r}")
        if not 0.0 < self.gamma <= 1.0:
            raise ValueError(f"DrQV2Config.gamma must be in (0, 1], got {self.gamma!r}")
        if self.num_expl_steps < 0:
            raise ValueError(f"DrQV2Config.num_expl_steps must be >= 0, "
                             f"got {self.num_expl_steps!r}")
        if self.shift_pad < 0:
            raise ValueError(f"DrQV2Config.shift_pad must be >= 0, got {self.shift_pad!r}")
        if self.encoder_dtype not in ENCODER_DTYPES:
            raise ValueError(f"DrQV2Config.encoder_dtype={self.encoder_dtype!r}; valid: "
                             f"{list(ENCODER_DTYPES)}")
        if self.encoder_conv not in CONV_IMPLS:
            raise ValueError(f"DrQV2Config.encoder_conv={self.encoder_conv!r}; valid: "
                             f"{list(CONV_IMPLS)}")
        parse_schedule(self.stddev_schedule)   # fail at construction on a bad string

    def validate(self, env: Any) -> None:
        """Against the env it will get (``rl.envs.registry.EnvDescription``), before anything is
        built: continuous actions, images the encoder can take, objectives and modules DrQ-v2
        can host."""
        from rl import modules
        from rl.agents import objectives
        from rl.core.nets import conv_encoder_output_size

        if env.discrete:
            raise ValueError(f"agent=drqv2 needs continuous actions; env.name={env.name} has "
                             f"discrete actions (use agent=rainbow or agent=imagination)")
        height, width = env.obs_shape[:2]
        try:
            conv_encoder_output_size(height, width, self.encoder_channels, self.encoder_layers)
        except ValueError:
            smallest = next(s for s in range(1, 4096) if _fits(s, self.encoder_layers))
            raise ValueError(f"env.size={height}: {height}x{width} images are too small for "
                             f"DrQ-v2's encoder (encoder_layers={self.encoder_layers} 3x3 convs, "
                             f"the first of stride 2); it needs env.size >= {smallest}") from None
        objectives.check_available(self.objectives, "drqv2")
        modules.check_configs(self.modules, "drqv2", PROVIDES)

    @classmethod
    def tiny(cls, **overrides) -> "DrQV2Config":
        """A small network for CPU tests (use with small images, e.g. 32x32)."""
        sizes = dict(feature_dim=8, hidden_dim=32, batch_size=8, encoder_channels=8,
                     encoder_layers=2, num_expl_steps=0)
        return cls(**{**sizes, **overrides})


def _fits(size: int, layers: int) -> bool:
    from rl.core.nets import conv_encoder_output_size

    try:
        conv_encoder_output_size(size, size, 1, layers)
        return True
    except ValueError:
        return False
