"""The layering: rl/ never imports its plugins (world_models/, representations/), which import
only rl.core; the registries load the plugins by entry point on the first lookup."""
import ast
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _imports(path: pathlib.Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def _offenders(package: str, allowed) -> dict[str, list[str]]:
    bad = {}
    for path in sorted((ROOT / package).rglob("*.py")):
        wrong = sorted(n for n in _imports(path) if not allowed(n))
        if wrong:
            bad[str(path.relative_to(ROOT))] = wrong
    return bad


def _top(name: str) -> str:
    return name.split(".")[0]


def test_rl_never_imports_its_plugins():
    assert _offenders("rl", lambda n: _top(n) not in {"world_models", "representations",
                                                      "experiments"}) == {}


def test_plugins_import_only_rl_core():
    for package in ("world_models", "representations"):
        bad = _offenders(package, lambda n: _top(n) != "rl" or n == "rl.core"
                         or n.startswith("rl.core."))
        assert bad == {}, package
    assert _offenders("world_models", lambda n: _top(n) not in {"representations",
                                                                "experiments"}) == {}


def test_registries_load_the_plugins_on_first_lookup():
    code = ("import sys\n"
            "from rl.agents.imagination import ImaginationAgent, ImaginationConfig\n"
            "assert 'world_models' not in sys.modules and 'representations' not in sys.modules\n"
            "from rl.core import objective, world_model\n"
            "print(world_model.get('rssm').__name__, objective.get('taco').__name__,\n"
            "      sorted(objective.available('drqv2')))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                         check=True).stdout.split()
    assert out[:2] == ["RSSMWorldModel", "TacoObjective"]
    assert "'taco'" in " ".join(out[2:]) and "'latent_l2'" in " ".join(out[2:])
