#!/usr/bin/env bash
# GPU leases of sessions 12-20 (one H200): TACO vs its DrQ-v2 control to 250k frames (issue 5), the
# Rainbow/SPR update benchmark, SPR on Atari-100k (issue 6), RePo vs Dreamer (issue 4). One process per item.
#   bash results/scripts/gpu_session12.sh launch taco:reacher_hard:2 drqv2:reacher_hard:2
#   FRAMES=200000 bash results/scripts/gpu_session12.sh launch repo:walker_walk:1 dreamer:walker_walk:1
#   SEEDS=4 bash results/scripts/gpu_session12.sh launch spr:Pong:1   # 4 seeds from 1 (preset: vmapped)
#   bash results/scripts/gpu_session12.sh launch spr:MsPacman:1x3 spr:Kangaroo:3x1   # per-item seed counts
#   bash results/scripts/gpu_session12.sh bench      # Rainbow/SPR update times -> $OUT/bench.md
#   SEEDS=3 bash results/scripts/gpu_session12.sh profile   # SPR kernel counts, XLA flag variants
#   EXTRA="loop.trace_at_frames=40000" ... launch ...     # overrides added to every run
#   FRAMES=200000 EXTRA="loop.eval_every_frames=20000 env.num_envs=4" ... launch repo:... dreamer:...
#     (4 envs per process: session 18's trace put most of a RePo/Dreamer run's wall time in
#     one-env acting steps; the loop keeps 100 updates per 1000 frames)
#   ALIGN_EXTRA="frames=50000" ... launch repoalign:walker_walk:3   # RePo, then alignment on it
#   FRAMES=200000 EXTRA="..." ... launch repo:walker_walk:4x3 dreamer:walker_walk:4x3
#     (3 copies from seed 4 in one process per arm, updated in turn: they cost 3x one seed, so
#     each copy advances at a third of a one-seed run's rate; session 20 took them to 100k/66k)
#   One Dreamer run alone on the GPU (4 envs) reaches 200k frames in ~17 min (221-227 frames/s);
#   shared with a second run, it drops to ~120 frames/s and 200k no longer fits in one lease.
#   bash results/scripts/gpu_session12.sh dreamer_flags   # Dreamer update under XLA command buffers
#   bash results/scripts/gpu_session12.sh status     # progress; packs what exists into $OUT
# The carry (.device + the tracked tree) must stay under 64 MiB: for DMC-only leases move
# .device/whl/ale_py-*.whl aside first (session 18: 64.6 MiB with it).
set -u
FRAMES=${FRAMES:-250000}
SEEDS=${SEEDS:-1}
COMMON="logger.wandb_mode=disabled loop.progress=false loop.checkpoints=false env.parallel=true ${EXTRA:-}"
source results/scripts/gpu_common.sh

case "${1:-}" in
  launch)
    shift; for item in "$@"; do
      parse_item "$item"
      [[ -n $COUNT && $KIND != spr && $KIND != der && $KIND != repo && $KIND != dreamer ]] && {
        echo "'$item': x<count> (seed copies in one process) is for spr, der, repo and dreamer items only"; exit 2; }
      copies=${COUNT:+num_seeds=$COUNT}; suffix=${COUNT:+x$COUNT}   # repo/dreamer: 1 seed by default
      dmc="env=dmc/$TASK seed=$SEED loop.frames=$FRAMES loop.eval_envs=10 loop.eval_episodes=10"
      repo="experiment=repo_distracted_dmc agent.world_model.decoder=false ~agent.objective.loss_scales.image"
      case $KIND in
        taco) run taco_${TASK}_s$SEED experiment=taco_dmc $dmc agent.batch_size=256 ;;
        drqv2) run drqv2_${TASK}_s$SEED experiment=taco_dmc_drqv2 $dmc agent.batch_size=256 ;;
        spr|der) preset=$([ $KIND = spr ] && echo spr_atari100k || echo der_atari100k)
                 n=${COUNT:-$SEEDS}
                 run ${KIND}_${TASK}_s${SEED}x$n experiment=$preset env=atari/$TASK seed=$SEED \
                   num_seeds=$n ${SEED_UPDATES:+loop.seed_updates=$SEED_UPDATES} ;;
        repo) run repo_${TASK}_s$SEED$suffix $repo $dmc $copies ;;   # issue 4
        repoalign)  # RePo keeping its final checkpoint, then alignment to the shifted env on it
          TAIL="loop.checkpoints=true loop.keep_checkpoints=1 loop.checkpoint_every_frames=0" \
            run repo_${TASK}_s$SEED $repo $dmc
          align_after repo_${TASK}_s$SEED $RUN_PID ;;
        dreamer) run dreamer_${TASK}_s$SEED$suffix experiment=repo_distracted_dmc_dreamer $dmc $copies ;;
        *) echo "unknown kind '$KIND' in '$item'; valid: taco, drqv2, spr, der, repo, repoalign, dreamer"
           exit 2 ;;
      esac
    done
    sleep 45; tail -n 3 $RES/*.log ;;
  bench) python -m experiments.bench --agents rainbow --seeds 1 4 8 --suites atari \
           --out $OUT/bench_rainbow.md 2>&1 | grep -v "^WARNING" ;;
  profile)  # SPR kernel counts and wall per fused call (3 vmapped seeds) under XLA's default
            # command buffers (CUDA graphs), none, and every kind including loops
    i=0; for flags in "" "--xla_gpu_enable_command_buffer=" \
        "--xla_gpu_enable_command_buffer=FUSION,CUBLAS,CUBLASLT,CUSTOM_CALL,CUDNN,WHILE,CONDITIONAL --xla_gpu_graph_min_graph_size=1"; do
      i=$((i + 1)); echo "XLA_FLAGS='$flags'"
      XLA_FLAGS="$flags" python results/scripts/profile_spr.py --trace /tmp/trace_$i --seeds $SEEDS \
        2>&1 | grep -v "^WARNING"
    done ;;
  dreamer_flags)  # the scan-heavy Dreamer update (1 copy) under the same three XLA_FLAGS
    for flags in "" "--xla_gpu_enable_command_buffer=" \
        "--xla_gpu_enable_command_buffer=FUSION,CUBLAS,CUBLASLT,CUSTOM_CALL,CUDNN,WHILE,CONDITIONAL --xla_gpu_graph_min_graph_size=1"; do
      echo "XLA_FLAGS='$flags'"
      XLA_FLAGS="$flags" python results/scripts/bench_encoder_conv.py --agents dreamer \
        --convs xla --modes one 2>&1 | grep -v "^WARNING"
    done ;;
  status) status ;;
  *) echo "usage: $0 launch <kind>:<task>:<seed>[x<count>] ... | bench | profile | dreamer_flags | status"; exit 2 ;;
esac
