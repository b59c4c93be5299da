"""World models: things that hold a latent state and step it forward under actions, behind one
protocol (``rl.core.world_model``) and one registry (``get(name)``, picked by ``world_model.name``).
"""
from rl.core.world_model import (Imagined, ObserveOutput, WorldModel, build, get, names,
                               register, unregister)
from world_models.config import WorldModelConfig
from world_models.rssm import RSSM, LatentState
from world_models.world_model import RSSMOutput, RSSMWorldModel

register("rssm", RSSMWorldModel)
import world_models.storm  # noqa: E402,F401  (registers "storm")

__all__ = ["WorldModel", "ObserveOutput", "Imagined", "register", "unregister", "get", "names",
           "build", "WorldModelConfig", "RSSM", "LatentState", "RSSMWorldModel", "RSSMOutput"]
