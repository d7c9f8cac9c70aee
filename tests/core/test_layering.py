"""The layers stay apart, and no module imports itself in a circle.

Rules (each checked on every ``import`` in the source, function-level ones included, so a lazy import cannot
hide a violation):

- ``worth/`` never imports Prefect, Dask, Zarr or MLflow (and ``import worth`` loads neither torch nor them);
- ``storage/`` never imports ``worth`` or Prefect;
- ``tasks/`` never imports ``flows``;
- ``storage/`` and ``worth/`` never import the layers above them (``tasks``, ``flows``, ``infra``, ``pipeline``);
- ``pipeline/`` (the plain-Python layer between ``tasks/`` and ``worth/``+``storage/``) imports neither Prefect
  nor Dask, nor the layers above it (``tasks``, ``flows``);
- the command line lives in ``flows/cli/`` only: nothing else imports Typer or Click, nor ``flows.cli``
  (there is no top-level ``cli`` package, which would claim a generic import name on every user's machine);
- MLflow is imported only in ``tasks/track.py`` and ``infra/``.

The checker itself is tested on a planted violation, so a rule that can no longer fail is noticed.
"""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LAYERS = ("worth", "storage", "tasks", "flows", "infra", "pipeline")  # pipeline/: once it exists


def _packages(root: Path) -> tuple[str, ...]:
    return tuple(p for p in LAYERS if (root / p).is_dir())


PACKAGES = _packages(ROOT)
ORCHESTRATION = ("prefect", "prefect_dask", "dask", "distributed", "zarr", "mlflow")
MLFLOW_HOMES = ("tasks/track.py", "infra/")
CLI_HOME = "flows/cli/"
CLI_LIBRARIES = ("typer", "click")
ABOVE_STORAGE = ("tasks", "flows", "infra", "pipeline")

RULES = [
    ("worth/", ORCHESTRATION, "the core library stays free of orchestration"),
    ("worth/", ABOVE_STORAGE + ("storage",), "the core library never imports the layers above it"),
    ("storage/", ("worth", "prefect"), "the store knows nothing of the library or of Prefect"),
    ("storage/", ABOVE_STORAGE, "the store never imports the layers above it"),
    ("tasks/", ("flows",), "tasks never import flows"),
    ("pipeline/", ORCHESTRATION + ("tasks", "flows", "infra", "cli"), "the pipeline is plain Python over worth and storage"),
]


def _imports(path: Path, package: str) -> list[tuple[str, int, bool]]:
    """``(absolute module, line, at module level)`` for every import in ``path`` (relative ones resolved)."""
    tree = ast.parse(path.read_text(), str(path))
    top = {id(node) for node in tree.body}
    # statements inside `if TYPE_CHECKING:` or try/except at module level still run at import: count them as top
    for node in tree.body:
        if isinstance(node, (ast.If, ast.Try)):
            top |= {id(n) for n in ast.walk(node)}
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(a.name, node.lineno, id(node) in top) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            out.append((mod, node.lineno, id(node) in top))
            # `from . import sub` imports the submodule sub
            out += [(f"{mod}.{a.name}", node.lineno, id(node) in top) for a in node.names]
    return out


def _modules(root: Path) -> dict[str, Path]:
    mods = {}
    for pkg in _packages(root):
        for path in sorted((root / pkg).rglob("*.py")):
            rel = path.relative_to(root).with_suffix("")
            parts = list(rel.parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            mods[".".join(parts)] = path
    return mods


def _package_of(name: str, path: Path) -> str:
    return name if path.name == "__init__.py" else name.rpartition(".")[0]


def violations(root: Path) -> list[str]:
    """Every import in the project that breaks one of the rules, as ``file:line imports X (why)``."""
    found = {}
    for name, path in _modules(root).items():
        rel = path.relative_to(root).as_posix()
        for mod, line, _ in _imports(path, _package_of(name, path)):
            head = mod.split(".")[0]
            for prefix, banned, why in RULES:
                if rel.startswith(prefix) and head in banned:
                    found.setdefault((rel, line), f"{rel}:{line} imports {mod} ({why})")
            if head == "mlflow" and not rel.startswith(MLFLOW_HOMES):
                found.setdefault((rel, line), f"{rel}:{line} imports {mod} (MLflow lives in tasks/track.py and infra/ only)")
            cli = head in CLI_LIBRARIES or head == "cli" or mod == "flows.cli" or mod.startswith("flows.cli.")
            if cli and not rel.startswith(CLI_HOME):
                found.setdefault((rel, line), f"{rel}:{line} imports {mod} (the command line lives in flows/cli/ only)")
    return list(found.values())


def circles(root: Path) -> list[list[str]]:
    """Import circles among the project's modules, following module-level imports (those that run at import)."""
    mods = _modules(root)
    graph: dict[str, set[str]] = {}
    for name, path in mods.items():
        edges = set()
        for mod, _, at_top in _imports(path, _package_of(name, path)):
            if at_top and mod in mods and mod != name:
                edges.add(mod)
        graph[name] = edges
    found, state = [], {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            # a package's __init__ importing its own submodules is how packages work, not a circle
            if node.startswith(nxt + "."):
                continue
            if state.get(nxt) == 1:
                found.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, stack)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [])
    return found


def test_no_layer_imports_what_it_must_not():
    assert violations(ROOT) == []


def test_no_import_circle():
    assert circles(ROOT) == []


@pytest.mark.parametrize("where,line,rule", [
    ("worth/objectives.py", "import zarr", "core library"),
    ("worth/api.py", "def f():\n    from prefect import task", "core library"),
    ("storage/store.py", "from worth import select", "store knows nothing"),
    ("storage/store.py", "import prefect", "store knows nothing"),
    ("tasks/embed.py", "from flows.embed import embed_flow", "tasks never import flows"),
    ("pipeline/select.py", "def h():\n    from prefect import task", "pipeline is plain Python"),
    ("pipeline/study.py", "from tasks import track", "pipeline is plain Python"),
    ("flows/embed.py", "import mlflow", "MLflow lives"),
    ("flows/cli/main.py", "def g():\n    import mlflow.tracking", "MLflow lives"),
    ("storage/store.py", "from tasks.embed import embed_chunks", "store never imports the layers above"),
    ("worth/api.py", "def h():\n    from storage import EmbeddingStore", "never imports the layers above"),
    ("tasks/embed.py", "import typer", "command line lives in flows/cli/"),
    ("flows/embed.py", "from flows.cli.errors import bad_input", "command line lives in flows/cli/"),
    ("infra/dask.py", "def k():\n    from click import echo", "command line lives in flows/cli/"),
    ("flows/select.py", "import cli.main", "command line lives in flows/cli/"),
])
def test_a_planted_violation_is_caught(tmp_path, where, line, rule):
    for pkg in PACKAGES:
        shutil.copytree(ROOT / pkg, tmp_path / pkg, ignore=shutil.ignore_patterns("__pycache__"))
    target = tmp_path / where
    target.write_text(target.read_text() + "\n\n" + line + "\n")
    found = violations(tmp_path)
    assert len(found) == 1 and found[0].startswith(where) and rule in found[0], found


@pytest.mark.parametrize("line,rule", [
    ("import prefect", "the pipeline is plain Python"),
    ("def f():\n    from dask import delayed", "the pipeline is plain Python"),
    ("from distributed import Client", "the pipeline is plain Python"),
    ("from tasks.select import run_select_job", "the pipeline is plain Python"),
    ("import flows.select", "the pipeline is plain Python"),
])
def test_a_planted_violation_in_the_pipeline_layer_is_caught(tmp_path, line, rule):
    """The rules of ``pipeline/`` hold whether or not the package exists yet: planted in a copy that has one."""
    for pkg in PACKAGES:
        shutil.copytree(ROOT / pkg, tmp_path / pkg, ignore=shutil.ignore_patterns("__pycache__"))
    (tmp_path / "pipeline").mkdir(exist_ok=True)
    (tmp_path / "pipeline" / "__init__.py").touch()
    target = tmp_path / "pipeline" / "planted.py"
    target.write_text('"""planted."""\n' + line + "\n")
    found = [v for v in violations(tmp_path) if v.startswith("pipeline/planted.py")]
    assert len(found) == 1 and rule in found[0], found


def test_there_is_no_top_level_cli_package():
    assert not (ROOT / "cli").exists()
    assert "flows.cli.main:main" in (ROOT / "pyproject.toml").read_text()


def test_a_planted_circle_is_caught(tmp_path):
    for pkg in PACKAGES:
        shutil.copytree(ROOT / pkg, tmp_path / pkg, ignore=shutil.ignore_patterns("__pycache__"))
    (tmp_path / "worth" / "optimizers.py").write_text(
        "from worth.api import select\n" + (ROOT / "worth" / "optimizers.py").read_text())
    assert any("worth.optimizers" in c and "worth.api" in c for c in circles(tmp_path))


def _loaded_after(code: str) -> set[str]:
    probe = code + "\nimport sys\nprint(' '.join(sorted({m.split('.')[0] for m in sys.modules})))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=ROOT)
    return set(out.stdout.split())


def test_no_module_of_worth_imports_orchestration():
    loaded = _loaded_after(
        "import pkgutil, importlib, worth\n"
        "for mod in pkgutil.walk_packages(worth.__path__, 'worth.'):\n"
        "    importlib.import_module(mod.name)\n"
    )
    assert "worth" in loaded
    assert not loaded & set(ORCHESTRATION), sorted(loaded & set(ORCHESTRATION))


@pytest.mark.parametrize("heavy", ["torch", *ORCHESTRATION])
def test_import_worth_is_light(heavy):
    assert heavy not in _loaded_after("import worth")
