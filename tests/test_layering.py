"""The import graph of the packages follows the intended layering.

    launch/            command lines, the training loop (the composition root), benchmarks
    actors/  learner/  acting (processes, buffers, inference server, Ray) | learning, checkpoints, evaluation
    agents/  envs/     the model and its memory cores | the environments

A package may import the packages below it, never one beside or above it:

- ``agents`` and ``envs`` import nothing of ``actors``, ``learner`` or ``launch``, and not
  each other, with one exception: ``agents`` may import ``envs.imports``, the helper that
  imports the user modules named by ``--core-import`` and ``--env-import`` (one helper, so
  that a user module is imported the same way, with the same one-line error, for cores and
  envs; ``agents.model.validate_model_config`` imports it lazily). Python loads the ``envs``
  package with it, but ``agents`` uses nothing else of ``envs``: anything else is a
  violation. ``envs`` imports nothing of ``agents``.
- ``actors`` imports only ``agents`` and ``envs``; ``learner`` likewise: the two are
  independent, and neither knows ``launch``.
- ``launch`` may import everything.

Every import statement counts, also one inside a function (a lazy import is still a
dependency); a module imported by name (importlib) is not seen.
The checker is a function of a source tree so that it is tested on a planted violation.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Dict, Iterable, List, Set, Tuple

ROOT = Path(__file__).resolve().parents[1]

PACKAGES = ("agents", "envs", "actors", "learner", "launch")

# package -> the project packages it may import (besides itself)
ALLOWED: Dict[str, Set[str]] = {
    "agents": set(),
    "envs": set(),
    "actors": {"agents", "envs"},
    "learner": {"agents", "envs"},
    "launch": {"agents", "envs", "actors", "learner"},
}

# (importing package, imported module or a parent of it): allowed exceptions, with the reason above
EXCEPTIONS: Set[Tuple[str, str]] = {("agents", "envs.imports")}


def imported_modules(path: Path, root: Path) -> List[Tuple[int, List[str]]]:
    """(line, names) of every import statement of one file, relative imports resolved.

    ``import a.b`` gives ``[a.b]``; ``from a import b`` gives ``[a, a.b]`` (``b`` may be a
    module): the statement is allowed when any of its names is.
    """
    tree = ast.parse(path.read_text(), filename=str(path))
    package = list(path.relative_to(root).parent.parts)     # e.g. ["agents", "kernels"]
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, [a.name]) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:                                   # from .x import y, from .. import z
                base = package[:len(package) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            out.append((node.lineno, [module] + [f"{module}.{a.name}" for a in node.names if a.name != "*"]))
    return out


def _allowed(importer: str, module: str) -> bool:
    top = module.split(".")[0]
    if top == importer or top not in PACKAGES or top in ALLOWED[importer]:
        return True
    return any(importer == pkg and (module == m or module.startswith(m + ".")) for pkg, m in EXCEPTIONS)


def layering_violations(root: Path, packages: Iterable[str] = PACKAGES) -> List[str]:
    """``file:line imports module`` for every import that breaks the layering under ``root``."""
    bad = []
    for pkg in packages:
        for path in sorted((root / pkg).rglob("*.py")):
            rel = path.relative_to(root).as_posix()
            for line, names in imported_modules(path, root):
                if not any(_allowed(pkg, name) for name in names):
                    bad.append(f"{rel}:{line} imports {names[0]} ({pkg} may import "
                               f"{', '.join(sorted(ALLOWED[pkg])) or 'no other package'})")
    return sorted(bad)


def test_the_project_follows_the_layering():
    bad = layering_violations(ROOT)
    assert not bad, "imports against the layering:\n" + "\n".join(bad)


def test_every_package_is_checked():
    present = {p.name for p in ROOT.iterdir() if (p / "__init__.py").is_file()} - {"tests"}
    assert present == set(PACKAGES), f"packages not in the layering: {sorted(present - set(PACKAGES))}"


def _tree(tmp_path: Path, files: Dict[str, str]) -> Path:
    for pkg in PACKAGES:
        (tmp_path / pkg).mkdir(parents=True, exist_ok=True)
        (tmp_path / pkg / "__init__.py").write_text("")
    for name, text in files.items():
        p = tmp_path / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    return tmp_path


def test_the_checker_passes_a_well_layered_tree(tmp_path):
    root = _tree(tmp_path, {
        "agents/model.py": "import torch\nfrom envs.imports import import_modules\nfrom agents import core\n",
        "envs/make.py": "from envs.base import VecEnv\nfrom . import registry\n",
        "agents/kernels/ops.py": "from .reference import f\nfrom .. import core\n",
        "actors/actor.py": "from agents.model import build_agent\nimport envs\n",
        "learner/learner.py": "from agents.core import StateSpec\n\ndef f():\n    from envs.stats import X\n",
        "launch/train.py": "import actors.pool\nfrom learner import learner\nfrom launch.config import C\n",
    })
    assert layering_violations(root) == []


def test_the_checker_finds_planted_violations(tmp_path):
    root = _tree(tmp_path, {
        # a lazy import inside a function counts
        "learner/trainer.py": "def make_source():\n    from actors.source import LocalRolloutSource\n",
        "learner/evaluation.py": "import launch.config\n",
        "actors/pool.py": "from learner import checkpoint\n",
        "agents/model.py": "from envs.base import ObsSpec\n",          # not the envs.imports exception
        "envs/make.py": "from agents import model\n",
        "agents/ok.py": "from envs import imports\n",                  # the exception, as a submodule
        "actors/sub/x.py": "from ...learner import losses\n",         # a relative import out of actors
    })
    bad = layering_violations(root)
    where = sorted(b.split(" ")[0] for b in bad)
    assert where == ["actors/pool.py:1", "actors/sub/x.py:1", "agents/model.py:1", "envs/make.py:1",
                     "learner/evaluation.py:1", "learner/trainer.py:2"], bad
    assert any("learner/trainer.py:2 imports actors.source" in b for b in bad)
