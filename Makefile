# Set-up and the two README commands. Everything installs into .venv on first use.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
export MUJOCO_GL ?= egl

.PHONY: install train test bench clean

$(BIN)/.installed: pyproject.toml
	@# headless rendering needs the EGL libraries (present on most images; install if missing)
	@ldconfig -p | grep -q libEGL.so.1 || { echo "installing libegl1 (EGL for headless MuJoCo)"; \
	  (apt-get update -qq && apt-get install -y -qq libegl1 libgl1) >/dev/null || \
	  echo "please install libegl1 and libgl1 (Debian/Ubuntu: sudo apt-get install libegl1 libgl1)"; }
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	@touch $@

install: $(BIN)/.installed

# the default agent (DrQ-v2) on the default task (toy/reach); ARGS="experiment=drqv2_dmc ..." to change
ARGS_TRAIN := $(if $(ARGS),$(ARGS),experiment=quickstart)
train: install
	$(BIN)/python -m experiments.train $(ARGS_TRAIN)

# tests in parallel processes (pytest-xdist), 2 workers for the 2-core CI machine; README gives the times
TEST_WORKERS ?= 2
test: install
	$(BIN)/pytest tests -n $(TEST_WORKERS) --dist worksteal --durations=25 $(ARGS)

bench: install
	$(BIN)/python -m experiments.bench $(ARGS)

clean:
	rm -rf $(VENV) runs outputs multirun
