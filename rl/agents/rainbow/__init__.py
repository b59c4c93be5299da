"""Data-efficient Rainbow (van Hasselt et al. 2019), SPR's host: ``agent``, ``config``, ``networks``, ``losses``."""
from rl.agents.rainbow.agent import *  # noqa: F401,F403  (names listed in agent.__all__)
from rl.agents.rainbow.agent import __all__  # noqa: F401
