"""The notebook-style examples run top to bottom (what a new user would paste into a notebook)."""
import numpy as np


def test_world_model_tour_runs_and_learns():
    from experiments.examples import world_model_tour

    out = world_model_tour.main(random_steps=40, updates=4, eval_episodes=2)
    losses = out["losses"]
    assert all(b < a for a, b in zip(losses, losses[1:])), losses   # the updates apply
    imagined = out["imagined"]
    assert imagined.dtype == np.uint8 and imagined.shape == (4, 6, 32, 32, 3)  # B, 1 + horizon
    video = out["video"]
    assert video.dtype == np.uint8 and video.shape == (8, 32, 3 * 32, 3)     # T, H, 3W, C
    assert out["evaluation"]["episodes"] == 2 and np.isfinite(out["evaluation"]["return"])
