#!/usr/bin/env bash
# Session 8 GPU runs (one H200): DrQ-v2 on cartpole_swingup and walker_walk, 250k frames,
# 3 seeds in one process per task (num_seeds=3; issue 2), plus a Dreamer update profile (issue 3).
#   bash results/scripts/gpu_session8.sh launch [task ...]  # background training runs (setsid)
#   bash results/scripts/gpu_session8.sh profile   # Dreamer update profile -> $OUT
#   bash results/scripts/gpu_session8.sh status | collect
set -u
COMMON="logger.wandb_mode=disabled loop.progress=false loop.checkpoints=false env.parallel=true"
source results/scripts/gpu_common.sh

case "${1:-}" in
  launch)   # tasks as further arguments (default: both; alone, one task runs ~2x faster)
    shift; for task in ${@:-cartpole_swingup walker_walk}; do
      run drqv2_${task}_3seeds env=dmc/$task agent=drqv2 num_seeds=3 seed=1 \
        "agent.stddev_schedule='linear(1.0,0.1,100000)'" loop.frames=250000 \
        loop.eval_every_frames=20000 loop.eval_envs=5 loop.eval_episodes=10
    done
    sleep 45; tail -n 4 $RES/*.log ;;
  profile)
    timeout ${2:-420} python -u results/scripts/profile_update.py --quick > $OUT/profile.txt 2>&1
    grep -v "^WARNING\|INFO" $OUT/profile.txt | tail -n 30 ;;
  status)
    for f in $RES/*/seed_0/metrics.jsonl; do
      echo "$f: $(grep env_fps $f | tail -n 1 | grep -o '"perf/env_fps": [0-9.]*\|"progress/frames": [0-9]*' | tr '\n' ' ')"
    done
    grep -h "eval\]" $RES/*.log | tail -n 12; grep -il "error\|traceback" $RES/*.log ;;
  collect)
    tar czf $OUT/res.tgz --exclude=videos --exclude=checkpoints -C $RES . && ls -la $OUT ;;
esac
