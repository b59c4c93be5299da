#!/usr/bin/env bash
# Session 9 GPU runs (one H200), one process per run, sharing the GPU:
#   lease 1: DrQ-v2 250k frames on cartpole_swingup and walker_walk (issue 2), Dreamer 100k on
#            cartpole_swingup (issue 3); lease 2: Dreamer 100k on walker_walk and cheetah_run.
#   bash results/scripts/gpu_session9.sh launch drqv2:cartpole_swingup:2 dreamer:walker_walk:1 ...
#   bash results/scripts/gpu_session9.sh status   # progress, and packs what exists into $OUT
set -u
COMMON="logger.wandb_mode=disabled loop.progress=false loop.checkpoints=false env.parallel=true"
source results/scripts/gpu_common.sh

case "${1:-}" in
  launch)
    shift; for item in "$@"; do
      parse_item "$item"; agent=$KIND; task=$TASK; seed=$SEED
      case $agent in
        drqv2) run drqv2_${task}_s$seed experiment=drqv2_dmc env=dmc/$task seed=$seed \
                 loop.frames=250000 loop.eval_envs=5 loop.eval_episodes=10 ;;
        dreamer) run dreamer_${task}_s$seed experiment=dreamer_dmc env=dmc/$task seed=$seed \
                   loop.frames=100000 loop.eval_envs=10 loop.eval_episodes=10 ;;
        *) echo "unknown agent '$agent' in '$item'; valid: drqv2, dreamer"; exit 2 ;;
      esac
    done
    sleep 60; tail -n 3 $RES/*.log ;;
  status) status ;;
esac
