"""DrQ-v2 (Yarats et al. 2021): ``agent`` (the update), ``config``, ``networks``, ``losses``."""
from rl.agents.drqv2.agent import *  # noqa: F401,F403  (names listed in agent.__all__)
from rl.agents.drqv2.agent import __all__  # noqa: F401
