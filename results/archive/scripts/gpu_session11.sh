#!/usr/bin/env bash
# Next GPU lease (one H200): TACO vs its DrQ-v2 control (issue 5) and RePo vs RePo's Dreamer
# baseline on plain (repo, dreamer) and distracted DMC (repo_d, dreamer_d; issue 4), one process
# per run.
#   FRAMES=250000 bash results/scripts/gpu_session11.sh launch taco:reacher_hard:1 drqv2:reacher_hard:1
#   bash results/scripts/gpu_session11.sh status   # progress, and packs what exists into $OUT
set -u
COMMON="agent.batch_size=256 logger.wandb_mode=disabled loop.progress=false loop.checkpoints=false env.parallel=true"
FRAMES=${FRAMES:-250000}
source results/scripts/gpu_common.sh

case "${1:-}" in
  launch)
    shift; for item in "$@"; do
      parse_item "$item"; method=$KIND; task=$TASK; seed=$SEED
      common="env=dmc/$task seed=$seed loop.frames=$FRAMES loop.eval_envs=10 loop.eval_episodes=10"
      case $method in
        taco) run taco_${task}_s$seed experiment=taco_dmc $common ;;
        drqv2) run drqv2_${task}_s$seed experiment=taco_dmc_drqv2 $common ;;
        repo) run repo_${task}_s$seed experiment=repo_dmc $common ;;
        dreamer) run dreamer_${task}_s$seed experiment=repo_dmc objective=reconstruction \
                   agent.objective.free_nats_mode=step $common ;;
        repo_d) run repo_distracted_${task}_s$seed experiment=repo_distracted_dmc $common ;;
        dreamer_d) run dreamer_distracted_${task}_s$seed experiment=repo_distracted_dmc_dreamer $common ;;
        *) echo "unknown method '$method' in '$item'; valid: taco, drqv2, repo, dreamer, repo_d," \
                "dreamer_d"; exit 2 ;;
      esac
    done
    sleep 60; tail -n 3 $RES/*.log ;;
  status) status ;;
  *) echo "usage: $0 launch <method>:<task>:<seed> ... | status"; exit 2 ;;
esac
