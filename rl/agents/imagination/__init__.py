"""The imagination agent (Dreamer-style latent actor-critic on any world model): ``agent``, ``config``."""
from rl.agents.imagination.agent import PROVIDES, ImaginationAgent, ImaginationState
from rl.agents.imagination.config import ImaginationConfig

__all__ = ["PROVIDES", "ImaginationAgent", "ImaginationConfig", "ImaginationState"]
