"""The import rule of README's ARCHITECTURE section, checked on the source (every import, also inside functions).

Layers inside ``csrm/``, lowest first: base, model, scoring, training, alignment, app. A module imports its own
layer and the layers below it, never one above. ``augmentation/`` imports only ``csrm.base``; ``eval/`` only
``csrm.base``, ``csrm.model`` and ``csrm.scoring``; only ``csrm.app`` imports ``augmentation`` or ``eval``. The
package facade (``csrm/__init__.py``, ``csrm/__main__.py``) re-exports the public API and sits above all;
below it, ``from csrm import __version__`` is the one import of the facade that is allowed.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CSRM_LAYERS = ("base", "model", "scoring", "training", "alignment", "app")
FACADE = len(CSRM_LAYERS)  # csrm/__init__.py and csrm/__main__.py
# what each top-level package outside csrm may import from csrm (and nothing from each other)
OUTSIDE = {"augmentation": {"base"}, "eval": {"base", "model", "scoring"}}


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
    if parts[0] in OUTSIDE:
        return parts[0], -1
    if parts[0] != "csrm":
        return None
    if len(parts) == 1 or parts[1] == "__main__":
        return "csrm", FACADE
    if parts[1] in CSRM_LAYERS:
        return "csrm", CSRM_LAYERS.index(parts[1])
    return "csrm", -2  # a module outside every layer (e.g. a new flat csrm/x.py)


def violations(root: Path) -> list[str]:
    """Every import in ``root``'s csrm/, augmentation/ and eval/ that breaks the rule, as 'file:line: why'."""
    found = []
    for package in ("csrm", *OUTSIDE):
        for path in sorted((root / package).rglob("*.py")):
            name = module_name(path, root)
            where = f"{path.relative_to(root)}"
            own = layer_of(name)
            if own == ("csrm", -2):
                found.append(f"{where}: module outside every layer of csrm ({', '.join(CSRM_LAYERS)})")
                continue
            for line, target, names in imports(path, name):
                dest = layer_of(target)
                if dest is None or dest[0] == own[0] == "csrm" and own[1] == FACADE:
                    continue
                why = _why(own, dest, target, names)
                if why:
                    found.append(f"{where}:{line}: imports {target}: {why}")
    return found


def _why(own: tuple[str, int], dest: tuple[str, int], target: str, names: list[str]) -> str:
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


def test_no_import_runs_upwards():
    assert violations(ROOT) == []


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
    found = violations(tmp_path)
    expected = [
        ("csrm/alignment/align.py:1", "only csrm.app imports augmentation and eval"),
        ("csrm/base/records.py:2", "csrm.base may not import the higher layer csrm.model"),
        ("csrm/loose.py", "module outside every layer"),
        ("csrm/training/train.py:1", "only __version__"),
        ("augmentation/pipeline.py:1", "augmentation may import only csrm.{base}"),
        ("eval/harness.py:1", "eval may import only csrm.{base, model, scoring}"),
        ("eval/harness.py:2", "eval never imports augmentation"),
    ]
    assert len(found) == len(expected), found
    for where, why in expected:
        assert any(f.startswith(where) and why in f for f in found), (where, why, found)
