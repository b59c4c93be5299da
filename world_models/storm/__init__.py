"""STORM (Zhang et al. 2023): a categorical tokenizer and a causal transformer with a key/value
cache behind the world-model protocol, registered as ``storm``.

- ``config.py``: ``StormConfig`` (paper sizes) and ``debug`` sizes;
- ``tokenizer.py``: conv encoder/decoder, unimix categorical latents, straight-through samples;
- ``transformer.py``: the post-LN causal transformer, ``KVCache`` and its one-step ``step``;
- ``context.py``: the carry (a window of tokens) for acting, observing and imagination starts;
- ``losses.py``: the ``[B, T]`` loss maps (masking, free bits on the batch-mean KL);
- ``actions.py``: env actions <-> action vectors;
- ``model.py``: ``StormWorldModel`` and the decisions on the official code's quirks.
"""
from rl.core.world_model import register
from world_models.storm.config import StormConfig
from world_models.storm.context import Context
from world_models.storm.model import StormOutput, StormWorldModel
from world_models.storm.transformer import KVCache, Transformer

register("storm", StormWorldModel)

__all__ = ["StormConfig", "StormWorldModel", "StormOutput", "Context", "KVCache", "Transformer"]
