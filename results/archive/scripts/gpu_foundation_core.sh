#!/usr/bin/env bash
# GPU runs behind results/drqv2_dmc and results/dreamer_dmc (issues 2 and 3), one H200.
# Usage on the device machine (repo root, .device/ bundle carried):
#   bash results/scripts/gpu_foundation_core.sh bench     # the benchmark table, alone on the GPU
#   bash results/scripts/gpu_foundation_core.sh launch    # all training runs in the background
#   bash results/scripts/gpu_foundation_core.sh collect   # pack logs and metrics into $OUT
set -u
COMMON="logger.wandb_mode=disabled loop.progress=false loop.checkpoint_every_frames=0 loop.eval_envs=10"
source results/scripts/gpu_common.sh

case "${1:-}" in
  bench)
    nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
    python -m experiments.bench --suites dmc toy --out $RES/bench.md 2>&1 | grep -v INFO ;;
  bench_imagination)
    python -m experiments.bench --agents imagination --suites toy --fused 10 --repeats 3 \
      --out $RES/bench_imagination.md 2>&1 | grep -v INFO ;;
  launch_drqv2)   # second lease: DrQ-v2 alone on the GPU (the first lease shared it with Dreamer)
    run drqv2_cartpole_swingup_s1 env=dmc/cartpole_swingup agent=drqv2 \
      "agent.stddev_schedule='linear(1.0,0.1,100000)'" loop.frames=250000 loop.eval_every_frames=20000 seed=1
    for seed in 1 2; do
      run drqv2_walker_walk_s$seed env=dmc/walker_walk agent=drqv2 \
        "agent.stddev_schedule='linear(1.0,0.1,100000)'" loop.frames=250000 loop.eval_every_frames=20000 seed=$seed
    done
    sleep 20; tail -n 2 $RES/*.log ;;
  launch)
    for task in cartpole_swingup walker_walk; do
      run drqv2_$task env=dmc/$task agent=drqv2 "agent.stddev_schedule='linear(1.0,0.1,100000)'" \
        loop.frames=250000 loop.eval_every_frames=20000 seed=1
    done
    for task in cartpole_swingup walker_walk cheetah_run; do
      run dreamer_$task env=dmc/$task agent=imagination env.convention=planet \
        loop.frames=100000 loop.eval_every_frames=10000 seed=1
    done
    sleep 60; tail -n 3 $RES/*.log ;;
  status)
    for f in $RES/*/metrics.jsonl; do echo "$f: $(grep env_fps $f | tail -n 1 | cut -c1-200)"; done
    grep -h "eval\]" $RES/*.log | tail -n 20; grep -il "error\|traceback" $RES/*.log ;;
  collect)
    tar czf $OUT/res.tgz -C $RES . && ls -la $OUT ;;
esac
