"""Packaging: every third-party import is declared, and a built wheel (not ``-e``) works on its own.

The wheel test builds the wheel from a copy of the source tree, installs it with ``--no-deps`` into a fresh
venv whose only view of the machine's packages is a ``.pth`` line naming the system site-packages folders (so
torch & co. are there, but the ``.pth`` hooks in them, such as the editable install's import finder, do not
run and the checkout stays invisible), then, from a temporary folder outside the repository, runs the
``csrm augment`` console script on the seed recipe and ``csrm.load(...).score(...)`` on a tiny model with the
optional extras blocked.
"""

from __future__ import annotations

import ast
import configparser
import json
import os
import re
import shutil
import site
import subprocess
import sys
import sysconfig
import textwrap
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("csrm", "augmentation", "eval")
UNDECLARED_OK: set[str] = set()
EXTRAS_ONLY = ("deepspeed", "fastapi", "uvicorn", "trl", "peft", "gguf", "wandb", "faker", "lm_eval", "langdetect",
               "immutabledict")


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirements() -> tuple[set[str], dict[str, set[str]]]:
    """(core requirement names, extra -> requirement names) from setup.cfg."""
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")

    def names(block: str) -> set[str]:
        return {normalize(re.split(r"[<>=!~\[; ]", line.strip(), maxsplit=1)[0])
                for line in block.splitlines() if line.strip() and not line.strip().startswith("#")}

    extras = {key: names(value) for key, value in cfg["options.extras_require"].items()}
    return names(cfg["options"]["install_requires"]), extras


def third_party_imports() -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Import):
                    mods = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    mods = [node.module]
                else:
                    continue
                for mod in mods:
                    top = mod.split(".")[0]
                    if top not in sys.stdlib_module_names and top not in PACKAGES:
                        found.setdefault(top, set()).add(str(path.relative_to(ROOT)))
    return found


def test_every_imported_package_is_declared():
    core, extras = requirements()
    declared = core.union(*extras.values())
    dists = packages_distributions()
    missing = {}
    for module, files in third_party_imports().items():
        if module in UNDECLARED_OK:
            continue
        names = {normalize(d) for d in dists.get(module, [module])}
        if not names & declared:
            missing[module] = sorted(files)
    assert not missing, f"imported but not declared in setup.cfg: {missing}"
    # the optional paths are extras, not core requirements, and `.[test]` still pulls all of them
    assert not core & set(EXTRAS_ONLY), core & set(EXTRAS_ONLY)
    assert {"deepspeed", "serve", "align", "wandb"} <= set(extras)
    assert "csrm[deepspeed,serve,align,wandb,rules]" in (ROOT / "setup.cfg").read_text()


def test_configs_links_point_at_the_package_data():
    from csrm.base.paths import DEFAULT_TAXONOMY, MAPPINGS_DIR

    assert DEFAULT_TAXONOMY.is_file() and DEFAULT_TAXONOMY.is_relative_to(ROOT / "csrm")
    for name, target in (("taxonomy", DEFAULT_TAXONOMY.parent), ("mappings", MAPPINGS_DIR)):
        link = ROOT / "configs" / name
        assert link.is_symlink() and link.resolve() == target.resolve()  # one home, no second copy
    assert {p.name for p in (ROOT / "configs" / "mappings").glob("*.yaml")} == {p.name for p in MAPPINGS_DIR.glob("*.yaml")}


def system_site_dirs() -> list[str]:
    dirs = [*site.getsitepackages(), sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]]
    if site.ENABLE_USER_SITE:
        dirs.append(site.getusersitepackages())
    return list(dict.fromkeys(d for d in dirs if Path(d).is_dir()))


DRIVER = textwrap.dedent("""
    import json, sys
    for name in {blocked!r}:  # the optional extras are absent: core paths must not need them
        sys.modules[name] = None
    import augmentation, csrm, eval
    from csrm import SafetyConfig
    import csrm.training.calibration, csrm.app.pipeline, csrm.scoring.score_file, csrm.training.train, csrm.app.eval  # core commands import
    scorer = csrm.load(sys.argv[1])
    result = scorer.score("No violence.", "Write a sword fight.", "The blade flashes.")
    print(json.dumps({{"files": [m.__file__ for m in (augmentation, csrm, eval)], "path": sys.path,
                       "render": SafetyConfig(allow={{"Violence": 2}}).render(),
                       "p_comply": result.p_comply, "reward": result.reward}}))
""")


@pytest.mark.slow
def test_built_wheel_works_without_the_checkout(tmp_path):
    from scoring_fixtures import save, tiny_encoder

    import csrm

    src = tmp_path / "src"  # build from a copy: the build leaves build/ and *.egg-info beside the sources
    shutil.copytree(ROOT, src, symlinks=True, ignore=shutil.ignore_patterns(
        ".git", "runs", "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache", ".ruff_cache", "wandb"))
    env = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV"}}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w",
                    str(tmp_path / "dist"), str(src)], check=True, env=env, cwd=tmp_path)
    wheel = next((tmp_path / "dist").glob("csrm-*.whl"))
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, env=env)
    python = venv / "bin" / "python"
    purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             check=True, env=env, capture_output=True, text=True).stdout.strip()
    Path(purelib, "system_site.pth").write_text("\n".join(system_site_dirs()) + "\n")
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps",
                    str(wheel)], check=True, env=env, cwd=tmp_path)

    work = tmp_path / "elsewhere"  # not the repository, not the source copy
    work.mkdir()
    shutil.copy(ROOT / "configs" / "augment" / "seed.yaml", work / "seed.yaml")
    done = subprocess.run([str(venv / "bin" / "csrm"), "augment", "seed.yaml", "output_dir=out", "progress=false"],
                          cwd=work, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    manifest = json.loads((work / "out" / "manifest.json").read_text())
    assert manifest["examples"]["train"]["count"] > 100 and manifest["pairs"]["train"]["count"] > 100

    model = save(*tiny_encoder(), tmp_path / "model")
    done = subprocess.run([str(python), "-c", DRIVER.format(blocked=EXTRAS_ONLY), str(model)], cwd=work, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    got = json.loads(done.stdout.strip().splitlines()[-1])
    assert all(Path(f).is_relative_to(venv) for f in got["files"]), got["files"]
    assert not any(Path(p).resolve() in (ROOT, src) for p in got["path"] if p)
    assert "Violence" in got["render"]  # the taxonomy was found as package data
    expected = csrm.load(model).score("No violence.", "Write a sword fight.", "The blade flashes.")  # the checkout
    assert got["p_comply"] == pytest.approx(expected.p_comply, abs=1e-5)
    assert got["reward"] == pytest.approx(expected.reward, abs=1e-5)
