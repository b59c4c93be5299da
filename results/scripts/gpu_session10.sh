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
      arm=${item%%:*}; rest=${item#*:}; task=${rest%%:*}; seed=${rest#*:}
      [[ $seed =~ ^[0-9]+$ ]] || { echo "bad item '$item'; expected tf32|fp32:<task>:<seed>"; exit 2; }
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
  status)
    nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader
    for f in $RES/*/metrics.jsonl; do
      echo "$f: $(grep env_fps $f | tail -n 1 | grep -o '"perf/[a-z_]*fps": [0-9.]*\|"progress/frames": [0-9]*' | tr '\n' ' ')"
    done
    for f in $RES/*.log; do echo "$(basename $f): $(grep 'eval\]' $f | tail -n 5 | sed 's/\[eval\] //' | tr '\n' ' ')"; done
    grep -il "error\|traceback" $RES/*.log
    tar czf $OUT/res.tgz --exclude=videos --exclude=checkpoints -C $RES . ;;
  *) echo "usage: $0 launch <arm>:<task>:<seed> ... | status"; exit 2 ;;
esac
