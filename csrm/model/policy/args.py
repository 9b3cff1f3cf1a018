"""The policy judge's settings (``csrm train`` with ``architecture: policy``; :mod:`csrm.base.config`).

Composing trains no network: the two readers are trained by their own configs (``configs/train/clause_minilm.yaml``
and ``configs/train/rule_minilm.yaml``) and only the router is fitted here, on the same data the readers were
trained on, in seconds. Every field is read by :mod:`csrm.model.policy.trainer`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from csrm.base.config import at_least, setting

FAMILY = "policy"


@dataclass
class PolicyJudgeArgs:
    """Compose a policy judge from a category reader and a rule judge (module doc)."""

    architecture: Literal["policy"] = setting("policy", help="the model family: policy (this config), clause, "
                                                           "cross_encoder or rule")
    category_model: str = setting("", help="a saved CSRM that reads category allow lists (csrm train with "
                                           "architecture clause or cross_encoder)")
    rule_model: str = setting("", help="a saved rule judge (csrm train with architecture rule)")
    dataset_path: str = setting("", help="the augmentation folder the category reader was trained on (csrm augment "
                                         "output: its train and validation examples' configs are the router's "
                                         "category units)")
    rule_data: str = setting("", help="the rules folder the rule judge was trained on (DIR/rules: train.jsonl and "
                                      "dev.jsonl; their policies' rules are the router's rule units)")
    output_dir: str = setting("runs/policy_judge", help="where the composed judge is saved (written atomically)")
    overwrite: bool = setting(False, help="write into a non-empty output_dir that is not an earlier csrm train "
                                          "output (only the files training writes are replaced)")
    max_units: int = setting(3000, help="units of each kind the router is fitted on (a deterministic sample of "
                                        "the distinct ones; each is embedded once by the frozen encoder)",
                             check=at_least(10))
    seed: int = setting(0, help="seed of that sample")
