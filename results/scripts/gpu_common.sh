# Sourced by the results/scripts/gpu_*.sh scripts on the device machine (repo root, .device/
# carried): installs the bundle and defines run(), which starts one training process that
# outlives the device call. Set COMMON (overrides added to every run) before calling run.
source .device/activate.sh
export XLA_PYTHON_CLIENT_PREALLOCATE=false   # several runs share the GPU
RES=/tmp/res
mkdir -p $RES

run() {  # name, overrides...
  local name=$1; shift
  echo "python -m experiments.train $* $COMMON" > $RES/$name.cmd
  setsid nohup python -m experiments.train "$@" $COMMON hydra.run.dir=$RES/$name \
    > $RES/$name.log 2>&1 < /dev/null &
}
