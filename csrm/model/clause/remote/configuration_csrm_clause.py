"""Configuration of an exported clause-reading CSRM, for ``transformers``' remote code (``auto_map`` in
``config.json``; ``AutoConfig.from_pretrained(path, trust_remote_code=True)``).

A copy of csrm's ``ClauseCSRMConfig`` (``csrm/model/clause/modeling.py``) so that the export loads in a process
that never imports csrm: the same ``model_type`` and fields, so the same ``config.json`` serves both (csrm reads
it with its own class). ``tests/test_clause_remote.py`` fails when the fields of the two differ.
"""

from __future__ import annotations

from transformers import AutoConfig, PretrainedConfig
from transformers.configuration_utils import SubConfigSpec


class ClauseCSRMConfig(PretrainedConfig):
    """The encoder's config (``backbone``) plus head sizes, text limits, calibration and thresholds."""

    model_type = "csrm_clause"
    sub_configs_defaults = {"backbone": SubConfigSpec(config_class=AutoConfig, model_type="bert")}

    backbone: PretrainedConfig | dict | None = None
    reader_dim: int = 32
    max_length: int = 256
    max_clause_chars: int = 400
    max_segment_chars: int = 600
    temperature: float = 1.0
    request_temperature: float | None = None  # request screening's own temperature (None: temperature)
    threshold: float = 0.5  # on p_violation = 1 - p_comply: violates when p_violation >= threshold
    config_thresholds: dict | None = None  # config key (sha1 of the config text, see config_key) -> threshold
    taxonomy: dict | None = None  # {"name", "categories": [{"name", "definition", "allowable"}]}
    blind_config: bool = False
