#!/usr/bin/env bash
# Second session-11 lease (one H200): RePo against RePo's Dreamer baseline on distracted DMC at
# equal frames (issue 4), one process per run, every run checkpointed at its end; then RePo's
# test-time alignment of a finished RePo run to the shifted env (test distractor pool + recoloured
# robot, conf/align.yaml), with a shortened schedule that fits the lease.
#   FRAMES=70000 bash results/scripts/gpu_session11b.sh launch repo_d:walker_walk:1 dreamer_d:walker_walk:1
#   bash results/scripts/gpu_session11b.sh align_after repo_distracted_walker_walk_s1
#   bash results/scripts/gpu_session11b.sh status   # progress, and packs what exists into $OUT
set -u
COMMON="logger.wandb_mode=disabled loop.progress=false env.parallel=true loop.keep_checkpoints=1 loop.checkpoint_every_frames=0"
FRAMES=${FRAMES:-70000}
ALIGN="frames=${ALIGN_FRAMES:-20000} pair_frames=${PAIR_FRAMES:-4000} parallel=true progress=false"
source results/scripts/gpu_common.sh

case "${1:-}" in
  launch)
    shift; for item in "$@"; do
      parse_item "$item"
      common="env=dmc/$TASK seed=$SEED loop.frames=$FRAMES loop.eval_envs=10 loop.eval_episodes=10"
      case $KIND in
        # RePo's probe decoder trains nothing upstream (stopped features); off, to save GPU time
        repo_d) run repo_distracted_${TASK}_s$SEED experiment=repo_distracted_dmc \
                  agent.world_model.decoder=false $common ;;
        dreamer_d) run dreamer_distracted_${TASK}_s$SEED experiment=repo_distracted_dmc_dreamer $common ;;
        *) echo "unknown method '$KIND' in '$item'; valid: repo_d, dreamer_d"; exit 2 ;;
      esac
    done
    sleep 45; tail -n 3 $RES/*.log ;;
  align_after)  # <run name>: waits (in the background) for the run's final.json, then aligns it
    name=$2
    echo "python -m experiments.align run=$RES/$name $ALIGN" > $RES/align_$name.cmd
    setsid nohup bash -c "while [ ! -f $RES/$name/final.json ]; do sleep 5; done; sleep 20;
      python -m experiments.align run=$RES/$name $ALIGN hydra.run.dir=$RES/align_$name" \
      > $RES/align_$name.log 2>&1 < /dev/null & ;;
  status) status; tail -n 5 $RES/align_*.log 2>/dev/null; cat $RES/align_*/align.json 2>/dev/null | head -c 1500 ;;
  *) echo "usage: $0 launch <method>:<task>:<seed> ... | align_after <run> | status"; exit 2 ;;
esac
