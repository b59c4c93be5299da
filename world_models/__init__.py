"""World models: things that hold a latent state and step it forward under actions."""
from world_models.config import WorldModelConfig
from world_models.rssm import RSSM, LatentState
from world_models.world_model import WorldModel, WorldModelOutputs

__all__ = ["WorldModelConfig", "RSSM", "LatentState", "WorldModel", "WorldModelOutputs"]
