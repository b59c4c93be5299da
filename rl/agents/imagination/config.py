"""``ImaginationConfig`` (Dreamer-v1 defaults) and named presets for the imagination agent.

Presets (``preset(name)``):
- "dreamer_v1": the defaults, official Dreamer-v1 (danijar/dreamer) numbers.
- "repo_port": the Dreamer-v1 port inside zchuning/repo (RePo's Dreamer baseline): 200-unit
  heads, 3-layer reward MLP, images in [-1, 1], model lr 3e-4, actor std softplus(x) + 0.1,
  entropy 3e-4, per-step free nats, no gamma weighting, no exploration noise, 14 imagined steps
  (its ``horizon=15`` counts the start state).
- Objectives (``objectives``): configs keyed by slot, in composition order (default: Dreamer's
  reconstruction); each adds its loss maps to the world model's own (``world_model.loss_scales``).
- "dreamerv3_like": DreamerV3's switches (categorical latents, LayerNorm + SiLU, symlog two-hot
  reward and critic, continue head, KL balance 5/6 with free nats 1, return normalisation, slow
  critic regulariser, REINFORCE). The numbers not on a card (lrs, sizes, gamma) are unverified.
- "debug": "dreamer_v1" at tiny sizes for 32x32 images (CPU tests).
Sizes (``with_size(cfg, name)``): "debug", "small" (= Dreamer-v1), "medium", "large" — our own
scaling, not a paper's.
"""
from __future__ import annotations

import dataclasses
from typing import Any

from rl.actor_critic import ActorCriticConfig
from rl.core import checks, objective as objective_lib, world_model as world_model_lib
from rl.modules.base import declare_host

# the module call sites this agent offers (rl.modules.base.CALL_SITES), declared where its
# config is, so a config is checked against them before the agent is imported
# bonus on imagined rewards, per-start weights of the actor loss (``sample_weights:actor``,
# [N] over the starts), after the update
PROVIDES = frozenset({"activations", "noise_std", "intrinsic_reward", "sample_weights:actor",
                      "after_update"})
declare_host("imagination", PROVIDES)

RETURN_INDEXINGS = ("v1", "v3")


def _rssm(**changes: Any) -> Any:
    """The RSSM's config (``world_models``' "rssm", found through the registry) with changes."""
    return dataclasses.replace(world_model_lib.get("rssm").Config(), **changes)


def _reconstruction() -> dict[str, Any]:
    return {"reconstruction": objective_lib.get("reconstruction").Config()}


@dataclasses.dataclass(frozen=True)
class ImaginationConfig:
    # any world-model config with .name (``world_models`` registry key)
    world_model: Any = dataclasses.field(default_factory=_rssm)
    actor_critic: ActorCriticConfig = dataclasses.field(default_factory=ActorCriticConfig)
    # objective configs (with .name, the ``representations`` registry key, and .loss_scales)
    # keyed by slot, in composition order; {}: the world model's own losses only
    objectives: dict[str, Any] = dataclasses.field(default_factory=_reconstruction)
    # modules keyed by name (``module=[...]``, rl/modules): exploration noise, intrinsic reward
    # in imagination, after_update
    modules: dict[str, Any] = dataclasses.field(default_factory=dict)
    batch_size: int = 50
    length: int = 50
    horizon: int = 15                # imagined steps after the start state
    gamma: float = 0.99
    return_lambda: float = 0.95
    return_indexing: str = "v1"      # "v1" Dreamer-v1 | "v3" DreamerV3 (rl/agents/imagination/agent.py)
    lambda_bootstrap: str = "next"   # "next" (Dreamer) | "same" (STORM's calc_lambda_return)
    model_lr: float = 6e-4           # Dreamer-v1; RePo port 3e-4
    actor_lr: float = 8e-5
    critic_lr: float = 8e-5
    model_grad_clip: float = 100.0
    actor_grad_clip: float = 100.0
    critic_grad_clip: float = 100.0
    adam_eps: float = 1e-8
    expl_noise: float = 0.3          # Dreamer-v1: Gaussian std (continuous) | epsilon (discrete)
    observe_unroll: int = 1          # lax.scan unroll over the sequence
    imagine_unroll: int = 1          # lax.scan unroll over the horizon
    report_context: int = 5          # observed frames before the open-loop part of the report video

    def __post_init__(self) -> None:
        if self.return_indexing not in RETURN_INDEXINGS:
            raise ValueError(f"return_indexing={self.return_indexing!r}; valid: "
                             f"{list(RETURN_INDEXINGS)}")
        if self.lambda_bootstrap not in ("next", "same"):
            raise ValueError(f"lambda_bootstrap={self.lambda_bootstrap!r}; valid: ['next', 'same']")
        minimum_horizon = 2 if self.return_indexing == "v1" else 1
        if self.horizon < minimum_horizon:
            raise ValueError(f"horizon={self.horizon}; return_indexing={self.return_indexing!r} "
                             f"needs horizon >= {minimum_horizon}")
        for name in ("batch_size", "length", "observe_unroll", "imagine_unroll"):
            if getattr(self, name) < 1:
                raise ValueError(f"ImaginationConfig.{name}={getattr(self, name)}; must be >= 1")
        for name in ("model_lr", "actor_lr", "critic_lr", "model_grad_clip", "actor_grad_clip",
                     "critic_grad_clip", "adam_eps"):
            checks.positive("ImaginationConfig", name, getattr(self, name))
        checks.in_interval("ImaginationConfig", "gamma", self.gamma, 0.0, 1.0, open_low=True)
        checks.in_interval("ImaginationConfig", "return_lambda", self.return_lambda, 0.0, 1.0)
        checks.non_negative("ImaginationConfig", "expl_noise", self.expl_noise)
        checks.non_negative("ImaginationConfig", "report_context", self.report_context)
        if not hasattr(self.world_model, "name"):
            raise ValueError(f"ImaginationConfig.world_model must be a world-model config with "
                             f"a 'name', got {self.world_model!r}")
        if not isinstance(self.objectives, dict):
            raise ValueError(f"ImaginationConfig.objectives must be a dict of objective configs "
                             f"keyed by slot, got {self.objectives!r}")
        for slot, cfg in self.objectives.items():
            if not hasattr(cfg, "name") or not hasattr(cfg, "loss_scales"):
                raise ValueError(f"ImaginationConfig.objectives[{slot!r}] must have 'name' and "
                                 f"'loss_scales', got {cfg!r}")


    def validate(self, env: Any) -> None:
        """Against the env it will get (``rl.envs.registry.EnvDescription``), before anything is
        built: images the world model can take, modules the imagination agent can host (it
        acts in discrete and continuous action spaces; every registered objective runs on a
        world model)."""
        from rl import modules

        check = getattr(self.world_model, "validate", None)
        if check is not None:
            check(tuple(env.obs_shape))
        for cfg in self.objectives.values():   # what a world-model host refuses of each
            check = getattr(objective_lib.get(cfg.name), "check_config", None)
            if check is not None:
                check(cfg)
        modules.check_configs(self.modules, "imagination", PROVIDES)


SIZES: dict[str, dict[str, dict[str, Any]]] = {
    "debug": {
        "world_model": dict(deter=16, stoch=4, classes=4, hidden=16, cnn_depth=4,
                            encoder_kernels=(4, 4, 4), decoder_kernels=(5, 5, 8), head_units=16,
                            reward_layers=1, continue_layers=1),
        "actor_critic": dict(actor_layers=1, actor_units=16, critic_layers=1, critic_units=16),
    },
    "small": {
        "world_model": dict(deter=200, stoch=30, hidden=200, cnn_depth=32, head_units=400),
        "actor_critic": dict(actor_units=400, critic_units=400),
    },
    "medium": {
        "world_model": dict(deter=512, stoch=32, hidden=512, cnn_depth=48, head_units=512),
        "actor_critic": dict(actor_units=512, critic_units=512),
    },
    "large": {
        "world_model": dict(deter=1024, stoch=32, hidden=1024, cnn_depth=64, head_units=768),
        "actor_critic": dict(actor_units=768, critic_units=768),
    },
}


def with_size(cfg: ImaginationConfig, size: str) -> ImaginationConfig:
    """``cfg`` with the widths of size preset ``size``."""
    if size not in SIZES:
        raise ValueError(f"unknown size {size!r}; valid: {sorted(SIZES)}")
    change = SIZES[size]
    return dataclasses.replace(
        cfg, world_model=dataclasses.replace(cfg.world_model, **change["world_model"]),
        actor_critic=dataclasses.replace(cfg.actor_critic, **change["actor_critic"]))


def _repo_port() -> ImaginationConfig:
    return ImaginationConfig(
        world_model=_rssm(image_scale="symmetric", head_units=200, reward_layers=3,
                          free_nats_mode="step"),
        actor_critic=ActorCriticConfig(actor_units=200, critic_units=200, actor_std_shift=0.0,
                                       actor_min_std=0.1, actor_entropy=3e-4,
                                       weight_by_gamma=False),
        horizon=14, model_lr=3e-4, expl_noise=0.0)


def _dreamerv3_like() -> ImaginationConfig:
    return ImaginationConfig(
        world_model=_rssm(latent="categorical", stoch=32, classes=32, act="silu", norm="layer",
                          image_scale="unit", head_act="silu", head_norm="layer",
                          reward_head="twohot", continue_head=True, free_nats=1.0,
                          free_nats_mode="step", kl_balance=5 / 6,
                          loss_scales={"reward": 1.0, "continue": 1.0, "kl": 0.6}),
        actor_critic=ActorCriticConfig(act="silu", norm="layer", actor_dist="bounded_normal",
                                       actor_min_std=0.1, actor_unimix=0.01,
                                       actor_grad="reinforce", actor_entropy=3e-4,
                                       critic_head="twohot", slow_critic_reg=1.0,
                                       return_norm=True, weight_by_gamma=False),
        batch_size=16, length=64, return_indexing="v3", gamma=0.997, model_lr=1e-4,
        actor_lr=3e-5, critic_lr=3e-5, model_grad_clip=1000.0, expl_noise=0.0)


PRESETS = {
    "dreamer_v1": ImaginationConfig,
    "repo_port": _repo_port,
    "dreamerv3_like": _dreamerv3_like,
    "debug": lambda: dataclasses.replace(with_size(ImaginationConfig(), "debug"),
                                         batch_size=4, length=8, horizon=5),
}


def preset(name: str) -> ImaginationConfig:
    """The named preset (see the module docstring)."""
    if name not in PRESETS:
        raise ValueError(f"unknown imagination preset {name!r}; valid: {sorted(PRESETS)}")
    return PRESETS[name]()
