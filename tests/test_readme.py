"""Every command in the README works as written: train commands compose and resolve (what
``--cfg job`` checks, plus the resolved run config), other entry points exist and take the flags
the README gives them, and ``make`` has the targets it names."""
import importlib.util
import pathlib
import re
import shlex
import subprocess

import pytest
from hydra import compose, initialize_config_dir

from experiments import config as config_lib

ROOT = pathlib.Path(__file__).resolve().parents[1]
config_lib.register()


def readme_commands() -> list[str]:
    """The commands of the README's bash blocks, continuation lines joined, comments cut."""
    text = (ROOT / "README.md").read_text()
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        for command in block.replace("\\\n", " ").splitlines():
            command = re.split(r"(?:^|\s+)#", command)[0].strip()
            if command:
                commands.append(command)
    return commands


def _first_of_sweep(override: str) -> str:
    """``key=a,b,c`` (a ``-m`` sweep) -> ``key=a``; lists ``[a,b]`` are kept whole."""
    key, _, value = override.partition("=")
    if "," in value and not value.startswith("["):
        value = value.split(",")[0]
    return f"{key}={value}"


COMMANDS = readme_commands()
TRAIN = [c for c in COMMANDS if re.match(r"^(\.venv/bin/)?python -m experiments\.train\b", c)]


def test_the_readme_has_the_two_setup_commands_and_train_commands():
    assert COMMANDS[:2] == ["make train", "make test"]
    assert len(TRAIN) >= 10


@pytest.mark.parametrize("command", TRAIN)
def test_readme_train_command_composes_and_resolves(command, tmp_path):
    args = shlex.split(command)[3:]
    overrides = [_first_of_sweep(a) for a in args if a != "-m"]
    if any(o.startswith("resume=") for o in overrides):
        pytest.skip("resume= needs an existing run directory (tests/test_loop.py resumes runs)")
    job = [o for o in overrides if not o.startswith(("hydra/", "hydra."))]
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        if len(job) != len(overrides):   # launcher options: compose with the Hydra config
            compose("config", overrides=overrides, return_hydra_config=True)
        cfg = compose("config", overrides=job)
    cfg.run_dir = str(tmp_path)
    config_lib.resolve(cfg)


@pytest.mark.parametrize("command", [c for c in COMMANDS if c not in TRAIN])
def test_readme_other_command_exists_with_its_flags(command):
    words = shlex.split(command)
    if words[0] == "make":
        done = subprocess.run(["make", "-n", "-C", str(ROOT), *words[1:]], capture_output=True,
                              text=True)
        assert done.returncode == 0, done.stderr
        return
    if words[:2] in (["python", "-m"], [".venv/bin/python", "-m"]):
        spec = importlib.util.find_spec(words[2])
        assert spec is not None and spec.origin, f"no module {words[2]}"
        source = pathlib.Path(spec.origin).read_text()
    elif words[0] in ("python", ".venv/bin/python") and words[1] == "-c":
        compile(words[2], "<README>", "exec")   # a one-liner: it must at least parse
        return
    elif words[0] in ("python", ".venv/bin/python"):
        source = (ROOT / words[1]).read_text()
    elif words[0].startswith(".venv/bin/pip"):
        return   # an install line
    else:
        raise AssertionError(f"a README command this test does not know: {command}")
    for flag in (w.split("=")[0] for w in words if w.startswith("--")):
        assert f'"{flag}"' in source, f"{command}: {flag} is not an option of {words[1:3]}"
