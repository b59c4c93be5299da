# Sourced by the results/scripts/gpu_*.sh scripts on the device machine (repo root, .device/
# carried): installs the bundle and defines run(), which starts one training process that
# outlives the device call, and status(). Set COMMON (overrides added to every run) before calling run.
# The device is released 30 s after a call returns: chain the next call at once (session 15 lost
# two runs to a slow follow-up), e.g. `sleep 530; bash results/scripts/gpu_session12.sh status`.
# Session 17 lost two more to the gap between a call's return and the next call (time spent
# reading the reply counts): send the follow-up first, read the output after.
# To wait for a run's end in a later call, poll the pid run() leaves in $RES/<name>.pid
# (`while kill -0 $(cat $RES/<name>.pid); do sleep 5; done`): session 21's `pgrep -f <run name>`
# also matched the waiting shell's own command line and slept out its whole timeout.
source .device/activate.sh
export XLA_PYTHON_CLIENT_PREALLOCATE=false   # several runs share the GPU
RES=/tmp/res
mkdir -p $RES

run() {  # name, overrides... (then $COMMON, then $TAIL: the last value of a key wins);
  # the process id is left in RUN_PID
  local name=$1; shift
  echo "${XLA_FLAGS:+XLA_FLAGS='$XLA_FLAGS' }python -m experiments.train $* $COMMON ${TAIL:-}" > $RES/$name.cmd
  setsid nohup python -m experiments.train "$@" $COMMON ${TAIL:-} hydra.run.dir=$RES/$name \
    > $RES/$name.log 2>&1 < /dev/null &
  RUN_PID=$!
  echo $RUN_PID > $RES/$name.pid
}

align_after() {  # name, pid: once that training process has exited, test-time alignment
  # (experiments/align.py, official schedule unless ALIGN_EXTRA says otherwise) on its final
  # checkpoint; output in $RES/<name>/align/<date>_<time>/ (align.json), log in align_<name>.log
  local name=$1 pid=$2 cmd="python -m experiments.align parallel=true progress=false ${ALIGN_EXTRA:-}"
  echo "$cmd run=<$name>" > $RES/align_$name.cmd
  setsid nohup bash -c "while kill -0 $pid 2>/dev/null; do sleep 15; done; $cmd run=$RES/$name" \
    > $RES/align_$name.log 2>&1 < /dev/null &
}

status() {  # progress and last evaluations of every run; packs logs and metrics into $OUT
  nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader
  for f in $RES/*/metrics.jsonl $RES/*/seed_*/metrics.jsonl; do   # seed_<k>/: vmapped seeds
    [ -f "$f" ] || continue
    echo "$f: $(grep env_fps $f | tail -n 1 | grep -o '"perf/[a-z_]*fps[a-z_]*": [0-9.]*\|"progress/frames": [0-9]*' | tr '\n' ' ')"
  done
  for f in $RES/*.log; do echo "$(basename $f): $(grep 'eval\]' $f | tail -n 4 | sed 's/\[eval\] //' | tr '\n' ' ')"; done
  for f in $RES/align_*.log; do [ -f "$f" ] && echo "$(basename $f): $(grep -v WARNING $f | tail -n 3 | tr '\n' ' ')"; done
  grep -il "error\|traceback" $RES/*.log
  for t in $RES/*/trace; do   # loop.trace_at_frames: summarised here, the raw trace stays behind
    [ -f $t/loop.json ] && [ ! -f $t.txt ] && python results/scripts/loop_trace_summary.py $t > $t.txt
  done
  tar czf $OUT/res.tgz --exclude=videos --exclude=checkpoints --exclude=trace -C $RES .
}

parse_item() {  # "<kind>:<task>:<seed>[x<count>]" -> KIND, TASK, SEED, COUNT (empty without
  # "x<count>": the script's default); a malformed item stops the script
  KIND=${1%%:*}; local rest=${1#*:}; TASK=${rest%%:*}; SEED=${rest#*:}; COUNT=
  [[ $SEED =~ ^[0-9]+x[1-9][0-9]*$ ]] && { COUNT=${SEED#*x}; SEED=${SEED%x*}; }
  [[ $SEED =~ ^[0-9]+$ ]] || { echo "bad item '$1'; expected <kind>:<task>:<seed>[x<count>]"; exit 2; }
}
