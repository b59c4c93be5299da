"""``StormConfig``: STORM's tokenizer, transformer, heads, losses and switches (paper sizes).

Defaults are the paper/official sizes (weipu-zhang/STORM ``config_files/STORM.yaml`` and
``sub_models/*``): 64x64 RGB in [0, 1], a conv tokenizer 32 -> 256 channels down to 4x4 (4096
features), 32 x 32 categorical latents with 1% unimix, a 2-layer / 512-wide / 8-head post-LN
transformer (FFN 1024, dropout 0.1, learned positions, at most 64 steps), 2 x 512 reward and
termination heads, losses image 1, reward 1, termination 1, dyn 0.5, rep 0.1 with 1 free nat on
the batch-mean KL. The switches for the official code's quirks are listed in
``world_models/storm/model.py``. ``DEBUG`` holds tiny sizes for 32x32 CPU tests.
"""
from __future__ import annotations

import dataclasses

from rl.core import checks
from rl.core import kl as kl_lib
from rl.core.patch_conv import CONV_IMPLS

IMAGE_SCALES = ("centered", "symmetric", "unit")
CNN_NORMS = ("layer", "none")
POSITIONS = ("learned", "sinusoidal")
ACT_LATENTS = ("posterior", "prior")
DTYPES = ("float32", "bfloat16")
LOSS_KEYS = ("image", "reward", "termination", "dyn", "rep")


@dataclasses.dataclass(frozen=True)
class StormConfig:
    name: str = "storm"                 # the world-model registry key
    # tokenizer (conv encoder k4 s2 p1, channels doubled per halving, down to final_width)
    image_scale: str = "unit"           # STORM: x / 255
    cnn_depth: int = 32                 # stem channels (64x64: 32, 64, 128, 256 at 4x4)
    final_width: int = 4                # the encoder's last map side (4096 features at 64x64)
    cnn_norm: str = "layer"             # "layer" (per-pixel channel LayerNorm) | "none"; the
    #                                     official BatchNorm is not ported (model.py docstring)
    encoder_conv: str = "xla"           # "xla" (cuDNN) | "patches" (slices + matmul)
    stoch: int = 32                     # latent groups
    classes: int = 32                   # classes per group
    unimix: float = 0.01                # uniform mix of the class probabilities
    # transformer
    layers: int = 2
    width: int = 512
    heads: int = 8
    ffn: int = 1024                     # FFN hidden width (STORM: 2 x width)
    max_len: int = 64                   # positions 0 .. max_len - 1
    dropout: float = 0.1                # attention probs, attention output, FFN output
    positions: str = "learned"          # "learned" (STORM) | "sinusoidal"
    compute_dtype: str = "float32"      # matmul/conv dtype; params stay float32 (STORM: bf16)
    # heads on the transformer output h
    head_layers: int = 2
    head_units: int = 512
    num_bins: int = 255                 # reward two-hot bins on [-bin_range, bin_range] (symlog)
    bin_range: float = 20.0
    # imagination starts and acting
    context: int = 8                    # tokens before each imagination start (STORM: 8)
    act_context: int = 16               # tokens the acting window keeps (STORM: a deque of 16)
    # the official code's quirks (paper intent by default; see model.py)
    episode_mask: bool = True           # False: attention and contexts cross episode starts
    act_latent: str = "posterior"       # "prior": act on the prior sample (one-step lag)
    hard_termination: bool = False      # True: continue = [termination logit <= 0]
    # the model's own losses
    free_nats: float = 1.0
    free_nats_mode: str = "batch"       # "batch" (STORM: on the batch-mean KL) | "step"
    loss_scales: dict[str, float] = dataclasses.field(default_factory=lambda: {
        "image": 1.0, "reward": 1.0, "termination": 1.0, "dyn": 0.5, "rep": 0.1})

    def __post_init__(self) -> None:
        for name, allowed in (("image_scale", IMAGE_SCALES), ("cnn_norm", CNN_NORMS),
                              ("encoder_conv", CONV_IMPLS), ("positions", POSITIONS),
                              ("act_latent", ACT_LATENTS), ("compute_dtype", DTYPES),
                              ("free_nats_mode", kl_lib.FREE_NATS_MODES)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"StormConfig.{name}={getattr(self, name)!r}; valid: "
                                 f"{list(allowed)}")
        for name in ("cnn_depth", "final_width", "stoch", "classes", "layers", "width", "heads",
                     "ffn", "max_len", "head_layers", "head_units", "context", "act_context"):
            if getattr(self, name) < 1:
                raise ValueError(f"StormConfig.{name}={getattr(self, name)}; must be >= 1")
        if self.width % self.heads:
            raise ValueError(f"StormConfig.width={self.width} must be divisible by "
                             f"heads={self.heads}")
        if not 0.0 <= self.unimix < 1.0:
            raise ValueError(f"StormConfig.unimix={self.unimix}; must be in [0, 1)")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"StormConfig.dropout={self.dropout}; must be in [0, 1)")
        if self.free_nats < 0.0:
            raise ValueError(f"StormConfig.free_nats={self.free_nats}; must be >= 0")
        if max(self.context, self.act_context) > self.max_len:
            raise ValueError(f"context={self.context} and act_context={self.act_context} must "
                             f"fit max_len={self.max_len}")
        unknown = sorted(set(self.loss_scales) ^ set(LOSS_KEYS))
        if unknown:
            raise ValueError(f"StormConfig.loss_scales needs exactly the keys {list(LOSS_KEYS)}, "
                             f"got {sorted(self.loss_scales)}")
        checks.weights("StormConfig", "loss_scales", self.loss_scales)

    def validate(self, obs_shape: tuple[int, ...]) -> None:
        """Whether the tokenizer takes ``(H, W, C)`` images: square, halved to ``final_width``."""
        from world_models.storm.tokenizer import halvings

        height, width = obs_shape[0], obs_shape[1]
        if height != width:
            raise ValueError(f"STORM's tokenizer needs square images, got {height}x{width}")
        try:
            halvings(height, self.final_width)
        except ValueError as error:
            raise ValueError(f"env.size={height} does not suit world_model=storm: {error} "
                             f"(e.g. env.size=64 with final_width=4, as STORM's Atari "
                             f"env.convention=storm)") from None

    @property
    def loss_keys(self) -> tuple[str, ...]:
        return LOSS_KEYS

    @property
    def stoch_size(self) -> int:
        """Width of a flattened latent sample."""
        return self.stoch * self.classes

    @property
    def feat_size(self) -> int:
        """Agent features ``[z_t, h_{t-1}]``."""
        return self.stoch_size + self.width


# tiny sizes for 32x32 images on CPU (conf/world_model/storm_debug.yaml mirrors them)
DEBUG = dict(cnn_depth=8, final_width=4, stoch=8, classes=8, layers=1, width=32, heads=2,
             ffn=64, max_len=32, head_layers=1, head_units=32, context=4, act_context=8)


def debug(**overrides) -> StormConfig:
    """The debug sizes (``DEBUG``) with ``overrides``."""
    return StormConfig(**{**DEBUG, **overrides})
