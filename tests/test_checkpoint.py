"""Orbax checkpoints: round trip, keep-last-k, and clear refusals of bad checkpoints."""
import dataclasses
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rl.checkpoint import Checkpointer, CheckpointError
from rl.logging import Logger, read_metrics


def _tree(scale=1.0, n=3):
    return {"params": {"w": jnp.arange(n, dtype=jnp.float32) * scale},
            "key": jax.random.PRNGKey(3), "count": jnp.asarray(5, jnp.int32),
            "frames": jnp.full((2, 4, 4, 3), 7, jnp.uint8)}


def test_round_trip_and_keep_last(tmp_path):
    ckpt = Checkpointer(tmp_path / "ck", keep=2)
    for step in (10, 20, 30):
        ckpt.save(step, _tree(step), {"fingerprint": "abc", "loop": {"step": step}})
    assert ckpt.latest_step() == 30
    assert sorted(int(p.name) for p in (tmp_path / "ck").iterdir() if p.name.isdigit()) == [20, 30]
    tree, meta = ckpt.restore(_tree(), fingerprint="abc")
    np.testing.assert_array_equal(tree["params"]["w"], np.arange(3) * 30.0)
    np.testing.assert_array_equal(tree["key"], jax.random.PRNGKey(3))
    assert tree["frames"].dtype == jnp.uint8 and meta["loop"]["step"] == 30
    ckpt.close()


def test_refuses_other_config(tmp_path):
    ckpt = Checkpointer(tmp_path / "ck")
    ckpt.save(1, _tree(), {"fingerprint": "abc"})
    with pytest.raises(CheckpointError, match="different model/replay config"):
        ckpt.restore(_tree(), fingerprint="xyz")
    with pytest.raises(CheckpointError, match="does not match"):
        ckpt.restore(_tree(n=5), fingerprint="abc")


def test_refuses_corrupt_checkpoint(tmp_path):
    ckpt = Checkpointer(tmp_path / "ck")
    ckpt.save(1, _tree(), {"fingerprint": "abc"})
    shutil.rmtree(tmp_path / "ck" / "1" / "state")
    with pytest.raises(CheckpointError):
        ckpt.restore(_tree(), fingerprint="abc")


def test_no_checkpoint_is_a_clear_error(tmp_path):
    with pytest.raises(CheckpointError, match="no checkpoint"):
        Checkpointer(tmp_path / "empty").restore(_tree())


def test_logger_jsonl_and_truncation_on_resume(tmp_path):
    log = Logger(tmp_path, wandb_mode="disabled")
    for step in (1, 2, 3):
        log.log(step, {"loss": jnp.asarray(step * 0.5), "nan": float("nan")})
    log.close()
    rows = read_metrics(tmp_path)
    assert [r["step"] for r in rows] == [1, 2, 3] and rows[1]["loss"] == 1.0 and rows[0]["nan"] == "nan"
    Logger(tmp_path, wandb_mode="disabled", resume_step=2).close()
    assert [r["step"] for r in read_metrics(tmp_path)] == [1, 2]
    with pytest.raises(ValueError, match="wandb_mode='offlin'"):
        Logger(tmp_path, wandb_mode="offlin")


def test_logger_wandb_offline_needs_no_account(tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    log = Logger(tmp_path, config={"a": 1}, wandb_mode="offline")
    log.log(1, {"x": 1.0})
    path = log.video(1, "eval/video", np.zeros((3, 8, 8, 1), np.uint8))
    log.close()
    assert path.exists() and (tmp_path / "wandb").exists()


def test_taco_and_repo_agent_states_round_trip(tmp_path):
    """The plug-in state of TACO (phi, its Adam, TACO's heads and Adam) and RePo's dual variable
    with its Adam state come back from a checkpoint exactly."""
    from representations.repo import RePoConfig
    from representations.taco import TacoConfig
    from rl.agents.drqv2 import DrQV2Agent, DrQV2Config
    from rl.agents.imagination import ImaginationAgent
    from rl.agents.imagination.config import preset
    from rl.core.types import ActionSpec, EnvSpec

    spec = EnvSpec("tiny", (32, 32, 3), ActionSpec.box(2))
    taco = DrQV2Agent(DrQV2Config.tiny(objectives={
        "taco": TacoConfig(feature_dim=4, hidden_dim=8)}), spec)
    cfg = preset("debug")
    repo = ImaginationAgent(dataclasses.replace(cfg, objectives={"repo": RePoConfig()}), spec)
    for name, agent in (("taco", taco), ("repo", repo)):
        state = agent.init(jax.random.PRNGKey(1))
        if name == "repo":   # a dual variable that has moved off its initial value
            moved = agent.objectives["repo"].update_state(state.objective_state["repo"],
                                                          {"kl_balanced": jnp.asarray(9.0)})
            state = state.replace(objective_state={"repo": moved})
        ckpt = Checkpointer(tmp_path / name)
        ckpt.save(1, state, {"fingerprint": name})
        restored, _ = ckpt.restore(agent.init(jax.random.PRNGKey(2)), fingerprint=name)
        ckpt.close()
        leaves, restored_leaves = jax.tree.leaves(state), jax.tree.leaves(restored)
        assert len(leaves) == len(restored_leaves)
        for a, b in zip(leaves, restored_leaves):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert restored.objective_state["repo"]["log_beta"] > np.log(1e-5)
