"""The import rule of README's ARCHITECTURE section, checked on the source (every import, also inside functions).

Layers inside ``csrm/``, lowest first: base, model, scoring, training, alignment, app. A module imports its own
layer and the layers below it, never one above. ``augmentation/`` imports only ``csrm.base``; ``eval/`` only
``csrm.base``, ``csrm.model`` and ``csrm.scoring``; only ``csrm.app`` imports ``augmentation`` or ``eval``. The
package facade (``csrm/__init__.py``, ``csrm/__main__.py``) re-exports the public API and sits above all;
below it, ``from csrm import __version__`` is the one import of the facade that is allowed.

Model families: each folder under ``csrm/model/`` (``clause/``, ``cross_encoder/``) is one family; a family
imports the shared ``csrm.model`` modules and ``csrm.base``, never another family, and the shared modules
import no family (the registry names families by import strings, resolved on use).

``bench/`` and ``tools/`` sit outside the installed packages: they may import ``csrm``, ``augmentation`` and
``eval`` (and their own folder's modules), and nothing imports them.

No import circle: the graph of every first-party import among the modules of ``csrm/``, ``augmentation/``,
``eval/``, ``bench/`` and ``tools/`` has no cycle (:func:`import_cycles`).
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CSRM_LAYERS = ("base", "model", "scoring", "training", "alignment", "app")
FACADE = len(CSRM_LAYERS)  # csrm/__init__.py and csrm/__main__.py
# what each top-level package outside csrm may import from csrm (and nothing from each other)
OUTSIDE = {"augmentation": {"base"}, "eval": {"base", "model", "scoring"}}
SCRIPTS = ("bench", "tools")  # not installed: may import csrm, augmentation and eval; nothing imports them


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path, name: str) -> list[tuple[int, str, list[str]]]:
    """(line, imported module, names taken from it) for every import in the file, relative ones resolved."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, alias.name, []) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, *([base] if base else [])])
            out.append((node.lineno, base, [alias.name for alias in node.names]))
    return out


def layer_of(module: str) -> tuple[str, int] | None:
    """(package, rank within csrm) of a first-party module; None for a third-party one."""
    parts = module.split(".")
    if parts[0] in SCRIPTS:
        return parts[0], -3
    if parts[0] in OUTSIDE:
        return parts[0], -1
    if parts[0] != "csrm":
        return None
    if len(parts) == 1 or parts[1] == "__main__":
        return "csrm", FACADE
    if parts[1] in CSRM_LAYERS:
        return "csrm", CSRM_LAYERS.index(parts[1])
    return "csrm", -2  # a module outside every layer (e.g. a new flat csrm/x.py)


def modules(root: Path) -> dict[str, Path]:
    """Every first-party module under ``root`` by dotted name; a bench script is also importable by its bare
    stem (``import common``: the bench scripts put their folder on ``sys.path``)."""
    out = {}
    for package in ("csrm", *OUTSIDE, *SCRIPTS):
        for path in sorted((root / package).rglob("*.py")) if (root / package).is_dir() else []:
            out[module_name(path, root)] = path
    return out


def resolve(target: str, names: list[str], known: dict[str, Path]) -> list[str]:
    """The first-party modules one import statement reaches: ``from pkg import sub`` reaches ``pkg.sub`` when
    that is a module, else ``pkg``; a bare bench stem (``common``) is ``bench.common``."""
    if f"bench.{target}" in known and target not in known:
        target = f"bench.{target}"
    subs = [f"{target}.{n}" for n in names if f"{target}.{n}" in known]
    return subs or ([target] if target in known else [])


def family_of(module: str, known: dict[str, Path]) -> str | None:
    """The model family folder a module is or sits in (``csrm.model.clause``, ``csrm.model.clause.x`` ->
    ``clause``: a sub-package of csrm/model), else None."""
    parts = module.split(".")
    if len(parts) < 3 or parts[:2] != ["csrm", "model"]:
        return None
    return parts[2] if any(m.startswith(f"csrm.model.{parts[2]}.") for m in known) else None


def violations(root: Path) -> list[str]:
    """Every import in ``root``'s csrm/, augmentation/, eval/, bench/ and tools/ that breaks the rule, as
    'file:line: why'."""
    found = []
    known = modules(root)
    for name, path in known.items():
        where = f"{path.relative_to(root)}"
        own = layer_of(name)
        if own == ("csrm", -2):
            found.append(f"{where}: module outside every layer of csrm ({', '.join(CSRM_LAYERS)})")
            continue
        for line, target, names in imports(path, name):
            if f"bench.{target}" in known and name.startswith("bench."):
                continue  # a bench script's own helper module (bare stem)
            dest = layer_of(target)
            if dest is None or dest[0] == own[0] == "csrm" and own[1] == FACADE:
                continue
            why = _why(own, dest, target, names) or _family_why(name, target, names, known)
            if why:
                found.append(f"{where}:{line}: imports {target}: {why}")
    return found


def _family_why(name: str, target: str, names: list[str], known: dict[str, Path]) -> str:
    """A family importing another family, or a shared csrm.model module importing a family."""
    if not name.startswith("csrm.model."):
        return ""
    own = family_of(name, known)
    for reached in resolve(target, names, known) or [target]:
        other = family_of(reached, known)
        if other is None or other == own:
            continue
        if own is None:
            return f"the shared csrm.model modules import no family (here {other}); use csrm.model.registry"
        return f"the {own} family may not import the {other} family"
    return ""


def _why(own: tuple[str, int], dest: tuple[str, int], target: str, names: list[str]) -> str:
    if dest[0] in SCRIPTS:
        return "" if own[0] == dest[0] else f"nothing imports {dest[0]}/ (outside the installed packages)"
    if own[0] in SCRIPTS:
        return ""
    if dest == ("csrm", FACADE):
        return "" if names == ["__version__"] else "only __version__ may be taken from the csrm facade"
    if dest == ("csrm", -2):
        return "a module outside every layer"
    if own[0] in OUTSIDE:
        if dest[0] == own[0]:
            return ""
        if dest[0] != "csrm":
            return f"{own[0]} never imports {dest[0]}"
        layer = CSRM_LAYERS[dest[1]]
        return "" if layer in OUTSIDE[own[0]] else f"{own[0]} may import only csrm.{{{', '.join(sorted(OUTSIDE[own[0]]))}}}"
    if dest[0] in OUTSIDE:
        return "" if own[1] == CSRM_LAYERS.index("app") else "only csrm.app imports augmentation and eval"
    if dest[1] > own[1]:
        return f"csrm.{CSRM_LAYERS[own[1]]} may not import the higher layer csrm.{CSRM_LAYERS[dest[1]]}"
    return ""


def is_reexport_init(path: Path) -> bool:
    """An ``__init__.py`` whose body is only a docstring, imports, ``__all__`` and lazy ``__getattr__``."""
    if path.name != "__init__.py":
        return False
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            continue
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
            continue
        if isinstance(node, ast.Assign) and all(isinstance(t, ast.Name) and t.id in {"__all__", "__version__"}
                                                for t in node.targets):
            continue
        if isinstance(node, ast.FunctionDef) and node.name == "__getattr__":
            continue
        return False
    return True


def import_graph(root: Path) -> dict[str, set[str]]:
    """module -> the first-party modules it imports (every import, also inside functions).

    Edges into a package ``__init__`` that only re-exports (:func:`is_reexport_init`) are left out: such an
    init holds no code of its own, so a module importing it depends on the submodules it re-exports, not on the
    init; counting it would report every ``augmentation.x -> augmentation -> augmentation.x`` as a circle
    although no two modules need each other. Its own edges (to the modules it re-exports) stay."""
    known = modules(root)
    graph: dict[str, set[str]] = {name: set() for name in known}
    for name, path in known.items():
        for _, target, names in imports(path, name):
            for reached in resolve(target, names, known):
                if reached != name and not is_reexport_init(known[reached]):
                    graph[name].add(reached)
    return graph


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The cycles of ``graph`` (one per strongly connected component of two or more modules, or a self-loop),
    by Tarjan's algorithm."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1 or node in graph.get(node, ()):
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_import_runs_upwards():
    assert violations(ROOT) == []


def test_no_import_circle():
    assert import_cycles(import_graph(ROOT)) == []


def test_the_circle_check_catches_a_circle(tmp_path: Path):
    """A two-module circle (one import inside a function), a three-module one, and no false circle through a
    re-exporting ``__init__``."""
    _write(tmp_path, "csrm/__init__.py", "")
    _write(tmp_path, "csrm/scoring/__init__.py", "")
    _write(tmp_path, "csrm/scoring/scorer.py", "def load():\n    from csrm.scoring import score_file\n")
    _write(tmp_path, "csrm/scoring/score_file.py", "from csrm.scoring.scorer import load\n")
    _write(tmp_path, "eval/__init__.py", "from eval.a import x\n__all__ = ['x']\n")
    _write(tmp_path, "eval/a.py", "import eval.b\n")
    _write(tmp_path, "eval/b.py", "from eval import c\n")
    _write(tmp_path, "eval/c.py", "from eval.a import x\n")
    _write(tmp_path, "augmentation/__init__.py", "from augmentation.pipeline import run\n")
    _write(tmp_path, "augmentation/pipeline.py", "from augmentation import recipe\n")
    _write(tmp_path, "augmentation/recipe.py", "import augmentation\n")  # only the re-exporting init: no circle
    assert import_cycles(import_graph(tmp_path)) == [["csrm.scoring.score_file", "csrm.scoring.scorer"],
                                                     ["eval.a", "eval.b", "eval.c"]]


def test_every_layer_exists_as_a_package():
    for layer in CSRM_LAYERS:
        assert (ROOT / "csrm" / layer / "__init__.py").is_file(), layer
    flat = sorted(p.name for p in (ROOT / "csrm").glob("*.py") if p.name not in {"__init__.py", "__main__.py"})
    assert flat == [], f"modules outside the layers: {flat}"


def _write(root: Path, rel: str, text: str) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def test_the_check_catches_each_kind_of_break(tmp_path: Path):
    """The checker itself, on a small tree with one break of each kind (so the rule test can fail)."""
    for layer in CSRM_LAYERS:
        _write(tmp_path, f"csrm/{layer}/__init__.py", "")
    _write(tmp_path, "csrm/__init__.py", "from csrm.scoring.scorer import load\n")
    _write(tmp_path, "csrm/base/io.py", "import json\nfrom csrm.base import errors\n")
    _write(tmp_path, "csrm/base/records.py", "def f():\n    from csrm.model.cross_encoder.modeling import M\n")  # upward, lazy
    _write(tmp_path, "csrm/scoring/scorer.py", "from csrm import __version__\nfrom csrm.model import modeling\n")
    _write(tmp_path, "csrm/training/train.py", "from csrm import load\n")  # the facade beyond __version__
    _write(tmp_path, "csrm/alignment/align.py", "import augmentation\n")  # only app may
    _write(tmp_path, "csrm/app/cli.py", "import augmentation\nfrom eval import cli\nfrom csrm.alignment import align\n")
    _write(tmp_path, "csrm/loose.py", "")  # outside every layer
    _write(tmp_path, "augmentation/__init__.py", "from csrm.base.records import R\nfrom .pipeline import run\n")
    _write(tmp_path, "augmentation/pipeline.py", "from csrm.scoring.scorer import load\n")  # augmentation: base only
    _write(tmp_path, "eval/__init__.py", "from csrm.scoring.scorer import load\nfrom csrm.model import modeling\n")
    _write(tmp_path, "eval/harness.py", "from csrm.training.train import run\nimport augmentation\n")
    _write(tmp_path, "csrm/model/clause/__init__.py", "")
    _write(tmp_path, "csrm/model/cross_encoder/__init__.py", "")
    _write(tmp_path, "csrm/model/cross_encoder/modeling.py", "")
    _write(tmp_path, "csrm/model/clause/modeling.py", "from csrm.model.cross_encoder.modeling import Out\n")
    _write(tmp_path, "csrm/model/batching.py", "def f():\n    from csrm.model.clause import modeling\n")
    _write(tmp_path, "csrm/model/registry.py", "FAMILIES = {'clause': 'csrm.model.clause.modeling:M'}\n")
    _write(tmp_path, "tools/gain.py", "from csrm.alignment.gain import x\nimport eval\nimport bench_clause\n")
    _write(tmp_path, "bench/common.py", "import csrm\n")
    _write(tmp_path, "bench/bench_clause.py", "import common\nfrom tools import gain\n")
    _write(tmp_path, "csrm/app/run.py", "def f():\n    import tools.gain\n")
    found = violations(tmp_path)
    expected = [
        ("csrm/alignment/align.py:1", "only csrm.app imports augmentation and eval"),
        ("csrm/base/records.py:2", "csrm.base may not import the higher layer csrm.model"),
        ("csrm/loose.py", "module outside every layer"),
        ("csrm/training/train.py:1", "only __version__"),
        ("augmentation/pipeline.py:1", "augmentation may import only csrm.{base}"),
        ("eval/harness.py:1", "eval may import only csrm.{base, model, scoring}"),
        ("eval/harness.py:2", "eval never imports augmentation"),
        ("csrm/model/clause/modeling.py:1", "the clause family may not import the cross_encoder family"),
        ("csrm/model/batching.py:2", "the shared csrm.model modules import no family (here clause)"),
        ("bench/bench_clause.py:2", "nothing imports tools/"),
        ("csrm/app/run.py:2", "nothing imports tools/"),
    ]
    assert len(found) == len(expected), found
    for where, why in expected:
        assert any(f.startswith(where) and why in f for f in found), (where, why, found)
