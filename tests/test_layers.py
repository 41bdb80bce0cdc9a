"""Who may import whom, read from the source: every module of ``jaxdiff/`` is parsed, none is run.

A package is a subpackage of ``jaxdiff`` or one of its top-level modules (``jaxdiff.sde``, ...).
An import counts wherever it stands, inside a function too. A rule on what a package may not use
holds through every module the package reaches (an import also runs the ``__init__`` of the
packages above the module it names); a failure names each link as ``file:line imports module``.
"""

from __future__ import annotations

import ast
import dataclasses
from collections.abc import Callable
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@dataclasses.dataclass(frozen=True)
class Import:
    path: str  # the importing file, relative to the repository
    line: int
    source: str  # the importing module
    target: str  # the imported module (a third-party name as written, e.g. "flax.linen")

    def __str__(self) -> str:
        return f"{self.path}:{self.line} imports {self.target}"


def package(module: str) -> str:
    """"jaxdiff.flow.corr" -> "jaxdiff.flow"; a top-level module is its own package."""
    return ".".join(module.split(".")[:2])


def _jaxdiff(module: str) -> bool:
    return module.split(".")[0] == "jaxdiff"


def _flax(module: str) -> bool:
    return module.split(".")[0] == "flax"


def _inside(*packages: str) -> Callable[[str], bool]:
    return lambda module: _jaxdiff(module) and package(module) in packages


def _outside(*packages: str) -> Callable[[str], bool]:
    return lambda module: _jaxdiff(module) and package(module) not in packages


def read_imports(repo: Path) -> dict[str, list[Import]]:
    """{module: its imports} for every module under ``repo/jaxdiff``."""
    files = {}
    for path in sorted((repo / "jaxdiff").rglob("*.py")):
        parts = path.relative_to(repo).with_suffix("").parts
        files[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return {module: _imports(module, path, set(files), repo) for module, path in files.items()}


def _imports(module: str, path: Path, modules: set[str], repo: Path) -> list[Import]:
    here = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(here[: len(here) - node.level + 1] + ([base] if base else []))
            named = (f"{base}.{alias.name}" for alias in node.names)
            targets = list(dict.fromkeys(name if name in modules else base for name in named))
        else:
            continue
        out += [Import(str(path.relative_to(repo)), node.lineno, module, target) for target in targets]
    return out


def _runs(target: str) -> list[str]:
    """The modules an import of ``target`` runs: the packages above it (``jaxdiff`` excepted), then it."""
    parts = target.split(".")
    return [".".join(parts[:i]) for i in range(min(2, len(parts)), len(parts) + 1)]


def import_cycles(imports: dict[str, list[Import]]) -> list[str]:
    """One message per cycle of packages, listing the imports that tie it."""
    graph = {package(m): set() for m in imports}
    for edges in imports.values():
        for edge in edges:
            if _jaxdiff(edge.target) and package(edge.target) != package(edge.source):
                graph[package(edge.source)].add(package(edge.target))
    reach = {p: _reachable(graph, p) for p in graph}
    cycles = sorted({frozenset(q for q in reach[p] if p in reach[q]) for p in graph if p in reach[p]}, key=sorted)
    messages = []
    for cycle in cycles:
        ties = [str(edge) for edges in imports.values() for edge in edges
                if package(edge.source) in cycle and package(edge.target) in cycle - {package(edge.source)}]
        messages.append(f"import cycle between {', '.join(sorted(cycle))}:\n  " + "\n  ".join(dict.fromkeys(ties)))
    return messages


def _reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    """Packages reached from ``start`` by one import or more."""
    seen, todo = set(), list(graph[start])
    while todo:
        p = todo.pop()
        if p not in seen:
            seen.add(p)
            todo.extend(graph.get(p, ()))
    return seen


def forbidden_chains(imports: dict[str, list[Import]], pkg: str, forbidden: Callable[[str], bool]) -> list[str]:
    """The shortest chain of imports from each module of ``pkg`` to each module ``forbidden`` names."""
    found = {}
    for start in sorted(m for m in imports if package(m) == pkg):
        chains, todo = {start: []}, [start]
        while todo:
            module = todo.pop(0)
            for edge in imports[module]:
                chain = chains[module] + [edge]
                if forbidden(edge.target):
                    found.setdefault((start, edge.target), ", ".join(map(str, chain)))
                    continue
                for ran in _runs(edge.target):
                    if ran in imports and ran not in chains:
                        chains[ran] = chain
                        todo.append(ran)
    return list(dict.fromkeys(found.values()))


RULES = [
    pytest.param("jaxdiff.data", _outside("jaxdiff.data"), "jaxdiff.data imports no other jaxdiff package",
                 id="data-is-a-leaf"),
    pytest.param("jaxdiff.nn", _inside("jaxdiff.samplers", "jaxdiff.train", "jaxdiff.bridges"),
                 "jaxdiff.nn knows nothing of samplers, training or bridges", id="nn-is-shared-blocks"),
    pytest.param("jaxdiff.samplers", _flax, "jaxdiff.samplers knows nothing of Flax", id="samplers-without-flax"),
    pytest.param("jaxdiff.train", _outside("jaxdiff.train", "jaxdiff.data", "jaxdiff._arrays", "jaxdiff._checks"),
                 "jaxdiff.train imports only what a generic trainer needs (itself, jaxdiff.data, jaxdiff._arrays, "
                 "jaxdiff._checks)", id="train-is-generic"),
]


@pytest.fixture(scope="module")
def imports():
    return read_imports(REPO)


def test_no_import_cycle_between_packages(imports):
    cycles = import_cycles(imports)
    if cycles:
        pytest.fail("\n".join(cycles), pytrace=False)


@pytest.mark.parametrize("pkg,forbidden,rule", RULES)
def test_house_rule(imports, pkg, forbidden, rule):
    chains = forbidden_chains(imports, pkg, forbidden)
    if chains:
        pytest.fail(f"{rule}, but:\n  " + "\n  ".join(chains), pytrace=False)


def test_the_reader_sees_relative_nested_and_indirect_imports(tmp_path):
    tree = {
        "__init__.py": "",
        "data/__init__.py": "",
        "data/qm9.py": "def build():\n    from ..graphs import molecules\n",
        "graphs/__init__.py": "",
        "graphs/molecules.py": "import jaxdiff.data.qm9\n",
        "nn/__init__.py": "\nimport flax.linen as nn\n",
        "nn/embeddings.py": "",
        "samplers/__init__.py": "",
        "samplers/ode.py": "from jaxdiff.nn import embeddings\n",
    }
    for name, text in tree.items():
        (tmp_path / "jaxdiff" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "jaxdiff" / name).write_text(text)
    imports = read_imports(tmp_path)
    (cycle,) = import_cycles(imports)
    assert cycle.splitlines() == ["import cycle between jaxdiff.data, jaxdiff.graphs:",
                                  "  jaxdiff/data/qm9.py:2 imports jaxdiff.graphs.molecules",
                                  "  jaxdiff/graphs/molecules.py:1 imports jaxdiff.data.qm9"]
    assert forbidden_chains(imports, "jaxdiff.samplers", _flax) == [
        "jaxdiff/samplers/ode.py:1 imports jaxdiff.nn.embeddings, jaxdiff/nn/__init__.py:2 imports flax.linen"]
