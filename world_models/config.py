"""``WorldModelConfig``: encoder + RSSM + heads + decoder, with Dreamer-v1 defaults.

Faithfulness of the defaults (Dreamer-v1 = danijar/dreamer, TF; RePo port = zchuning/repo,
PyTorch; V3 = DreamerV3):
- RSSM deter 200 (GRU), stoch 30, hidden 200, ELU, std = softplus + 0.1: Dreamer-v1 and the RePo
  port agree. The categorical latent (``latent="categorical"``) follows V3: 32 groups x 32
  classes, 1% unimix, straight-through samples, LayerNorm + SiLU (set ``norm``/``act``).
- Image scale: Dreamer-v1 uses ``x/255 - 0.5`` ("centered"), the RePo port ``x/255*2 - 1``
  ("symmetric", checked in its ``common/utils.py``), STORM and V3 ``x/255`` ("unit").
- Heads: Dreamer-v1 uses 400 units, a 2-layer reward MLP and a 3-layer continue MLP; the RePo
  port uses 200 units and 3 reward layers (see ``presets.repo_port``).
- The model's own losses (``world_models.world_model``): ``free_nats=3, free_nats_mode="batch",
  kl_balance=None`` is official Dreamer-v1; ``free_nats_mode="step"`` the RePo repo's Dreamer
  baseline; ``kl_balance=0.8`` DreamerV2; ``free_nats=1, kl_balance=5/6, loss_scales kl=0.6``
  DreamerV3 (per step) or STORM ("batch").
"""
from __future__ import annotations

import dataclasses

from rl.core import checks
from rl.core import kl as kl_lib
from rl.core.patch_conv import CONV_IMPLS

LATENTS = ("gaussian", "categorical")
REWARD_HEADS = ("gaussian", "twohot")
IMAGE_SCALES = ("centered", "symmetric", "unit")


@dataclasses.dataclass(frozen=True)
class WorldModelConfig:
    name: str = "rssm"                # the world-model registry key (world_models.get)
    # RSSM
    latent: str = "gaussian"          # "gaussian" (Dreamer-v1) | "categorical" (DreamerV3)
    deter: int = 200                  # GRU state size
    stoch: int = 30                   # Gaussian dims, or number of categorical groups
    classes: int = 32                 # classes per group (categorical only)
    hidden: int = 200                 # width of the RSSM's input/prior/posterior layers
    min_std: float = 0.1              # Gaussian: std = softplus(raw) + min_std
    unimix: float = 0.01              # categorical: mix 1% uniform into the class probabilities
    act: str = "elu"                  # dense activation: "elu" (v1) | "silu" (V3) | ...
    norm: str = "none"                # "none" (v1) | "layer" (V3: also a LayerNorm GRU)
    # pixels
    image_scale: str = "centered"     # "centered" [-0.5,0.5] | "symmetric" [-1,1] | "unit" [0,1]
    cnn_depth: int = 32
    cnn_act: str = "relu"
    encoder_conv: str = "xla"         # "xla" (cuDNN) | "patches" (slices + matmul, PatchConv)
    encoder_kernels: tuple[int, ...] = (4, 4, 4, 4)   # stride 2, VALID: 64 -> 31 -> 14 -> 6 -> 2
    decoder_kernels: tuple[int, ...] = (5, 5, 6, 6)   # stride 2, VALID: 1 -> 5 -> 13 -> 30 -> 64
    decoder: bool = True              # build the decoder (a probe for objectives without recon)
    # heads on features [deter, stoch]
    head_units: int = 400
    head_act: str = "elu"
    head_norm: str = "none"
    reward_head: str = "gaussian"     # "gaussian" unit-variance NLL | "twohot" symlog (V3/STORM)
    reward_layers: int = 2
    continue_head: bool = False       # Dreamer-v1 default off (constant discount in imagination)
    continue_layers: int = 3
    num_bins: int = 255               # two-hot bins on [-bin_range, bin_range] in symlog space
    bin_range: float = 20.0
    # the model's own losses: reward NLL, continue BCE (with a continue head), KL(post || prior)
    free_nats: float = 3.0
    free_nats_mode: str = "batch"     # "batch" (Dreamer-v1, STORM) | "step" (RePo port, V3)
    kl_balance: float | None = None   # None: plain KL; alpha: gradient share of the prior
    loss_scales: dict[str, float] = dataclasses.field(
        default_factory=lambda: {"reward": 1.0, "kl": 1.0})   # + "continue" with its head

    def __post_init__(self) -> None:
        _check_choice("latent", self.latent, LATENTS)
        _check_choice("reward_head", self.reward_head, REWARD_HEADS)
        _check_choice("image_scale", self.image_scale, IMAGE_SCALES)
        _check_choice("encoder_conv", self.encoder_conv, CONV_IMPLS)
        for name in ("deter", "stoch", "hidden", "cnn_depth", "head_units", "classes"):
            if getattr(self, name) < 1:
                raise ValueError(f"WorldModelConfig.{name}={getattr(self, name)}; must be >= 1")
        if not 0.0 <= self.unimix < 1.0:
            raise ValueError(f"WorldModelConfig.unimix={self.unimix}; must be in [0, 1)")
        _check_choice("free_nats_mode", self.free_nats_mode, kl_lib.FREE_NATS_MODES)
        if self.kl_balance is not None and not 0.0 <= self.kl_balance <= 1.0:
            raise ValueError(f"kl_balance={self.kl_balance}; must be in [0, 1] or None")
        if self.free_nats < 0.0:
            raise ValueError(f"free_nats={self.free_nats}; must be >= 0")
        if not self.encoder_kernels or not self.decoder_kernels:
            raise ValueError("encoder_kernels and decoder_kernels must not be empty")
        # Hydra hands lists; keep tuples so the config stays hashable (it is static under jit)
        object.__setattr__(self, "encoder_kernels", tuple(self.encoder_kernels))
        object.__setattr__(self, "decoder_kernels", tuple(self.decoder_kernels))
        checks.weights("WorldModelConfig", "loss_scales", self.loss_scales)

    def validate(self, obs_shape: tuple[int, ...]) -> None:
        """Whether the encoder and the decoder take ``(H, W, C)`` images (the RSSM's convs are
        stride 2, VALID: the decoder makes exactly one size)."""
        from world_models.conv import check_decoder, encoder_embed_size

        try:
            encoder_embed_size(obs_shape, self.cnn_depth, self.encoder_kernels)
            if self.decoder:
                check_decoder(obs_shape, self.decoder_kernels)
        except ValueError as error:
            raise ValueError(f"env.size={obs_shape[0]} does not suit the world model "
                             f"({self.name}): {error}") from None

    @property
    def loss_keys(self) -> tuple[str, ...]:
        return ("reward", "kl") + (("continue",) if self.continue_head else ())

    @property
    def stoch_size(self) -> int:
        """Width of the flattened stochastic sample."""
        return self.stoch * self.classes if self.latent == "categorical" else self.stoch

    @property
    def feat_size(self) -> int:
        return self.deter + self.stoch_size


def _check_choice(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"{name}={value!r}; valid: {list(allowed)}")
