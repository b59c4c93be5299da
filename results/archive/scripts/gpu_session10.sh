#!/usr/bin/env bash
# Session 10 GPU A/B (one H200): does JAX's default TF32 matmul precision explain DrQ-v2's slow
# early cartpole learning? Same runs with and without JAX_DEFAULT_MATMUL_PRECISION=highest.
#   bash results/scripts/gpu_session10.sh launch tf32:cartpole_swingup:1 fp32:cartpole_swingup:1 ...
#   bash results/scripts/gpu_session10.sh status   # progress, and packs what exists into $OUT
set -u
COMMON="logger.wandb_mode=disabled loop.progress=false loop.checkpoints=false env.parallel=true"
FRAMES=${FRAMES:-100000}
source results/scripts/gpu_common.sh

case "${1:-}" in
  launch)
    shift; for item in "$@"; do
      parse_item "$item"; arm=$KIND; task=$TASK; seed=$SEED
      case $arm in
        tf32) unset JAX_DEFAULT_MATMUL_PRECISION ;;
        fp32) export JAX_DEFAULT_MATMUL_PRECISION=highest ;;
        *) echo "unknown arm '$arm' in '$item'; valid: tf32, fp32"; exit 2 ;;
      esac
      run drqv2_${arm}_${task}_s$seed experiment=drqv2_dmc env=dmc/$task seed=$seed \
        loop.frames=$FRAMES loop.eval_envs=5 loop.eval_episodes=10
      [[ $arm == fp32 ]] && echo "JAX_DEFAULT_MATMUL_PRECISION=highest" >> $RES/drqv2_${arm}_${task}_s$seed.cmd
    done
    unset JAX_DEFAULT_MATMUL_PRECISION
    sleep 60; tail -n 2 $RES/*.log ;;
  status) status ;;
  *) echo "usage: $0 launch <arm>:<task>:<seed> ... | status"; exit 2 ;;
esac
