"""DMC tables (reference_numbers.md sections 1-6): DrQ-v2 (its repo's curves), Dreamer-v1 (CURL
Table 1, PlaNet protocol), TACO (Table 1, unverified in the cards), RePo on distracted DMC and
DrM on the hard tasks (the cards have no per-task numbers: every cell missing).
Mean ± std over seeds as printed / as computed from the score files.
"""
from __future__ import annotations

from experiments.tables import Cell, Published, Table


def _cells(rows: dict[str, tuple[float, float] | None], verified: bool = True
           ) -> dict[str, Cell | None]:
    return {t: None if v is None else Cell(*v, verified=verified) for t, v in rows.items()}


# DrQ-v2 @1M frames (easy tasks: the last eval, 980k) [file: facebookresearch/drqv2@c0c650b:
# curves/dmc_<task>.csv], section 2; seeds per task 8-10.
_DRQV2_EASY = {
    "cartpole_swingup": (865, 15), "walker_walk": (767, 370), "finger_spin": (860, 104),
    "ball_in_cup_catch": (910, 118), "hopper_stand": (918, 20), "walker_stand": (981, 5),
    "pendulum_swingup": (838, 36), "cartpole_balance": (993, 5),
    "cartpole_balance_sparse": (962, 113),
}
# CURL Table 1, 500k environment steps (= frames), Dreamer-v1 column (numbers supplied by the
# Dreamer authors), section 1a.
_DREAMER_500K = {
    "finger_spin": (796, 183), "cartpole_swingup": (762, 27), "reacher_easy": (793, 164),
    "cheetah_run": (570, 253), "walker_walk": (897, 49), "ball_in_cup_catch": (879, 87),
}
_CURL_500K = {
    "finger_spin": (926, 45), "cartpole_swingup": (841, 45), "reacher_easy": (929, 44),
    "cheetah_run": (518, 28), "walker_walk": (902, 43), "ball_in_cup_catch": (959, 27),
}
# TACO Table 1 (1M frames, 6 seeds) as recorded in the algorithm card: [unverified] (section 3).
_TACO = {
    "quadruped_run": (541, 38), "hopper_hop": (261, 52), "walker_run": (637, 11),
    "quadruped_walk": (793, 8), "cheetah_run": (821, 48), "finger_turn_hard": (632, 75),
    "acrobot_swingup": (241, 21), "reacher_hard": (883, 63), "reach_duplo": (234, 21),
}
_DRQV2_PER_TACO = {
    "quadruped_run": (407, 21), "hopper_hop": (189, 35), "walker_run": (517, 43),
    "quadruped_walk": (680, 52), "cheetah_run": (691, 42), "finger_turn_hard": (220, 80),
    "acrobot_swingup": (128, 8), "reacher_hard": (572, 51), "reach_duplo": (206, 32),
}
_DRQV2_CSV_1M = {   # the same 9 tasks in DrQ-v2's own curves at 1M frames [file], section 2
    "quadruped_run": (459, 71), "hopper_hop": (224, 80), "walker_run": (546, 108),
    "quadruped_walk": (750, 79), "cheetah_run": (729, 41), "finger_turn_hard": (214, 186),
    "acrobot_swingup": (168, 75), "reacher_hard": (706, 196), "reach_duplo": (202, 19),
}
_DRQV2_SOURCE = "facebookresearch/drqv2@c0c650b curves/dmc_<task>.csv (reference_numbers 2)"
_DRM_HARD = ("dog_stand", "dog_walk", "dog_trot", "dog_run", "humanoid_stand", "humanoid_walk",
             "humanoid_run", "manipulator_bring_ball", "acrobot_swingup_sparse")
_DRQV2_HUMANOID_30M = {"humanoid_stand": (813, 50), "humanoid_walk": (768, 81),
                       "humanoid_run": (225, 41)}
_REPO_TASKS = ("walker_walk", "cheetah_run")

TABLES = (
    Table("drqv2_dmc", "DrQ-v2 on DMC easy tasks (1M frames)", "dmc", tuple(_DRQV2_EASY),
          1_000_000, 10,
          {"action repeat": 2, "batch": 256, "eval episodes": 10, "frame stack": 3,
           "eval every": "20k frames"},
          (Published("DrQ-v2", _DRQV2_SOURCE + "; easy tasks' 1M = the 980k eval",
                     _cells(_DRQV2_EASY), seeds=10, note="8-10 seeds per task"),),
          preset="table_drqv2_dmc"),
    Table("dreamer_dmc", "Dreamer-v1 on the PlaNet benchmark (500k env steps)", "dmc",
          tuple(_DREAMER_500K), 500_000, None,
          {"action repeat": "PlaNet per task (finger/walker 2, cartpole 8, others 4)",
           "batch": "50 x 50", "eval episodes": 10, "image": "64x64"},
          (Published("Dreamer (v1)", "CURL ICML'20 Table 1, 500k env steps (numbers from the "
                     "Dreamer authors)", _cells(_DREAMER_500K), printed={"mean": 782.8}),
           Published("CURL", "CURL ICML'20 Table 1, 500k env steps", _cells(_CURL_500K),
                     seeds=10)),
          preset="table_dreamer_dmc",
          note="the cards lack Dreamer-v1's seed count; x-axis env steps = simulator frames"),
    Table("taco_dmc", "TACO on DMC (1M frames)", "dmc", tuple(_TACO), 1_000_000, 6,
          {"action repeat": 2, "batch": 1024, "K": 3, "eval episodes": 10,
           "eval every": "10k frames"},
          (Published("TACO", "TACO NeurIPS'23 Table 1 as recorded in the card (unverified)",
                     _cells(_TACO, verified=False), seeds=6, printed={"mean": 560}),
           Published("DrQ-v2 (per TACO)", "TACO Table 1 as recorded in the card (unverified)",
                     _cells(_DRQV2_PER_TACO, verified=False), seeds=6, printed={"mean": 401}),
           Published("DrQ-v2 (official curves)", _DRQV2_SOURCE + ", at 1M frames",
                     _cells(_DRQV2_CSV_1M), seeds=10)),
          preset="table_taco_dmc",
          note="reach_duplo (dm_control manipulation) is not built by our DMC wrapper; "
               "walker tasks use n-step 1 in the official task files"),
    Table("repo_distracted_dmc", "RePo on distracted DMC (1M frames)", "dmc", _REPO_TASKS,
          1_000_000, None,
          {"action repeat": 2, "batch": "50 x 50", "eval episodes": 10,
           "updates": "100 every 500 policy steps", "distractor": "procedural clips (paper: "
           "Kinetics driving_car)"},
          (Published("RePo", "RePo NeurIPS'23 figures (no numbers in the cards)",
                     {t: None for t in _REPO_TASKS}),
           Published("Dreamer (RePo repo)", "RePo NeurIPS'23 figures (no numbers in the cards)",
                     {t: None for t in _REPO_TASKS})),
          preset="table_repo_distracted_dmc",
          note="gate: RePo clearly above Dreamer on the same envs and budget"),
    Table("drm_dmc_hard", "DrM on DMC hard tasks (30.1M frames)", "dmc", _DRM_HARD, 30_100_000,
          4,
          {"action repeat": 2, "batch": 256, "eval episodes": 10, "lr": "8e-5 (acrobot 1e-4)",
           "eval every": "10k frames"},
          (Published("DrM", "DrM ICLR'24 figures (no per-task numbers in the cards)",
                     {t: None for t in _DRM_HARD}, seeds=4),
           Published("DrQ-v2 (official curves)", _DRQV2_SOURCE + ", humanoid at 30M frames",
                     {t: None if t not in _DRQV2_HUMANOID_30M else Cell(*_DRQV2_HUMANOID_30M[t])
                      for t in _DRM_HARD}, seeds=10)),
          preset="table_drm_dmc_hard",
          note="gate (cards): DrM > DrQ-v2 control on dog_* and manipulator, no seed stuck at 0"),
)
