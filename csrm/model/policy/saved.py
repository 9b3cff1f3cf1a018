"""The policy judge as a saved CSRM: one folder, one ``config.json`` (``model_type: csrm_policy``), and the two
readers it routes to, each a complete saved CSRM of its own family::

    policy_judge/
      config.json      model_type csrm_policy: the router, the thresholds, the taxonomy, what was composed
      category/        a saved CSRM that reads category allow lists (the clause family)
      rules/           a saved rule judge (the rule family)

Nothing is retrained when composing: each reader keeps its weights, calibration and thresholds, which is what
makes a pure category config score exactly as the category reader scores it. ``threshold`` and
``config_thresholds`` are the fields :class:`csrm.scoring.scorer.Scorer` reads for every family;
``config_thresholds`` starts as the union of the readers' per-config tables (a config's text decides its key, so a
config tuned on the category reader keeps its cut), and ``csrm calibrate``-style threshold fits on the composite
add to it.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from csrm.base.errors import InputError

MODEL_TYPE = "csrm_policy"
PARTS = {"category": "category", "rules": "rules"}  # part name -> its folder inside the composite


@dataclass
class PolicyJudgeConfig:
    """A saved policy judge's configuration (module doc). ``router``: :class:`~csrm.model.policy.router.Router`
    as a dict; ``thresholds``: each reader's default cut on P(violation) (``category``, ``rules``), used where
    ``threshold`` is ``None`` (:meth:`~csrm.model.policy.predictor.PolicyPredictor.default_threshold`); ``threshold``:
    one cut for every policy, set by a threshold fit on the judge itself (``Scorer.fit_thresholds``); ``composed``: what
    training measured (router accuracy, the readers' folders it was built from). A plain dataclass: the judge has
    no weights of its own for a ``PretrainedConfig`` to describe."""

    router: dict
    thresholds: dict
    threshold: float | None = None
    config_thresholds: dict | None = None
    taxonomy: dict | None = None
    composed: dict | None = None
    model_type: str = MODEL_TYPE


class PolicyJudgeModel:
    """A loaded policy judge: its config and the folder its readers are in. It has no weights of its own (the
    readers are loaded by :class:`csrm.model.policy.predictor.PolicyPredictor` through the registry), so it is a
    plain holder rather than a ``PreTrainedModel``."""

    def __init__(self, config: PolicyJudgeConfig, root: str | Path):
        self.config = config
        self.root = Path(root)

    @classmethod
    def from_pretrained(cls, path: str | Path, *, trust_remote_code: bool = False) -> PolicyJudgeModel:
        """A local folder, or a hub id (the whole repository is downloaded: the readers are sub-folders)."""
        root = Path(path)
        if not root.is_dir():
            from huggingface_hub import snapshot_download

            try:
                root = Path(snapshot_download(str(path)))
            except Exception as err:  # noqa: BLE001 - any hub failure is the same "cannot load" for the user
                raise InputError(f"cannot load a CSRM from here: {type(err).__name__}: {err}", path=str(path)) from None
        config_file = root / "config.json"
        try:
            data = json.loads(config_file.read_text(encoding="utf-8"))
        except (OSError, ValueError) as err:
            raise InputError(f"unreadable config.json: {err}", path=str(config_file)) from None
        if data.get("model_type") != MODEL_TYPE:
            raise InputError(f"model_type {data.get('model_type')!r}, expected {MODEL_TYPE!r}", path=str(config_file),
                             field="model_type")
        for field in ("router", "thresholds"):
            if not isinstance(data.get(field), dict):
                raise InputError("missing: a policy judge's config.json has it (csrm train configs/train/policy.yaml)",
                                 path=str(config_file), field=field)
        for part in PARTS.values():
            if not (root / part / "config.json").is_file():
                raise InputError(f"the policy judge's {part}/ reader is missing (no {part}/config.json)",
                                 path=str(root))
        known = {f.name for f in fields(PolicyJudgeConfig)}
        return cls(PolicyJudgeConfig(**{k: v for k, v in data.items() if k in known}), root)

    def eval(self) -> PolicyJudgeModel:
        return self

    def part_dir(self, part: str) -> Path:
        return self.root / PARTS[part]

    def save_config(self, folder: str | Path) -> None:
        """Write ``config.json`` (the readers' folders are copied by the trainer)."""
        data = {**asdict(self.config), "model_type": MODEL_TYPE}
        (Path(folder) / "config.json").write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
