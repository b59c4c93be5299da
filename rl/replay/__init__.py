"""Replay: a ring buffer of uint8 frames on one device, as a pytree with pure jittable functions.

Frames are stored once; frame stacks are rebuilt at sampling. See ``state.py`` for the storage
convention (per-env rings, shared write pointer, action that led to each frame).

    buf = replay.init(spec, capacity, num_envs, device=replay.choose_device(spec, capacity, budget))
    buf = replay.add_timestep(buf, ts, action)            # or replay.add(...) inside jit
    tr  = replay.sample_transitions(buf, key, 256, n_step=3, gamma=0.99, frame_stack=3)
    seq = replay.sample_sequences(buf, key, 16, length=64)
    win = replay.sample_transition_windows(buf, key, 256, 3, 0.99, 3, horizon=3)   # TACO, SPR
"""
from rl.replay.add import add, add_timestep, update_priorities
from rl.replay.gather import gather_stack, gather_window, n_step_return
from rl.replay.sample import (Sequences, Transitions, sample_sequences, sample_transitions,
                              valid_sequence_starts, valid_transition_starts)
from rl.replay.samplers import (EpisodeRecency, Prioritized, RecencyMixed, Sampler, Uniform,
                                episodes_back, prioritized, recency_mixed, sample_starts, uniform)
from rl.replay.windows import (TransitionWindows, sample_transition_windows,
                               window_steps_in_episode)
from rl.replay.state import (ReplayState, capacity_per_env, choose_device, describe, init,
                             projected_bytes, slot_ages, written_mask)

__all__ = [
    "ReplayState", "Transitions", "Sequences", "Sampler",
    "init", "projected_bytes", "describe", "choose_device", "capacity_per_env",
    "add", "add_timestep", "update_priorities",
    "sample_transitions", "sample_sequences", "sample_starts",
    "TransitionWindows", "sample_transition_windows", "window_steps_in_episode",
    "valid_transition_starts", "valid_sequence_starts",
    "gather_stack", "gather_window", "n_step_return",
    "slot_ages", "written_mask", "episodes_back",
    "Uniform", "uniform", "Prioritized", "prioritized", "RecencyMixed", "recency_mixed",
    "EpisodeRecency",
]
