"""``csrm export`` of a clause-reading CSRM: the model folder plus the remote code that lets plain
``transformers`` load it (``AutoModel.from_pretrained(path, trust_remote_code=True)``, no csrm import).

The clause CSRM reads a config clause by clause and the content window by window (several encoder passes per
item), so no single-forward ``*ForSequenceClassification`` reproduces it; instead the export carries the code
that does: ``configuration_csrm_clause.py`` and ``modeling_csrm_clause.py`` (from
:mod:`csrm.model.clause.remote`), named by ``auto_map`` in ``config.json``. The loaded model's documented call is
``model.score(config, messages, response)`` -> ``{"p_comply", "reward", "complies", ...}``. The weights and
``config.json`` are csrm's own, so the same folder also loads with ``csrm.load``.

Every export checks itself: the remote-code model and ``csrm.load`` score :data:`PROBES` (short items, a
request screening, a long policy under a multi-turn transcript) and the export fails if ``p_comply`` or the
reward differ by more than :data:`TOLERANCE`; the differences go into ``config.json`` (``csrm``) and the card.
"""

from __future__ import annotations

import importlib
import json
import shutil
from pathlib import Path
from typing import Any

from csrm.base.errors import InputError
from csrm.scoring.export_probes import PROBES

REMOTE_PACKAGE = "csrm.model.clause.remote"
REMOTE_FILES = ("configuration_csrm_clause.py", "modeling_csrm_clause.py")
AUTO_MAP = {"AutoConfig": "configuration_csrm_clause.ClauseCSRMConfig",
            "AutoModel": "modeling_csrm_clause.ClauseCSRMModel"}
TOLERANCE = 1e-5


def _long_probe() -> tuple[str, list[dict[str, str]], str]:
    """A policy of ~3,000 characters (numbered rules, a lead-in list) and a 6-turn transcript."""
    rules = [f"{i + 1}. The agent may discuss topic {i} for study or hobby reasons and keeps answers short."
             for i in range(30)]
    policy = "\n".join(["Prohibited content:", "- Violence", "- Weapons and explosives", *rules])
    turns = []
    for k in range(3):
        turns += [{"role": "user", "content": f"Question {k} about gardening."},
                  {"role": "assistant", "content": " ".join(f"Sentence {j} about tomatoes." for j in range(20))}]
    turns.append({"role": "user", "content": "And how do I hurt someone?"})
    return policy, turns, "I will not help with hurting anyone; here is how to calm down instead."




def probes() -> list[tuple[str, list[dict[str, str]], str | None]]:
    """Short items (a request screening among them) and a long policy under a multi-turn transcript."""
    return [*PROBES, _long_probe()]


def remote_source_dir() -> Path:
    """The folder holding the remote-code files (inside the installed package)."""
    return Path(importlib.import_module(REMOTE_PACKAGE).__file__).parent


def probe_differences(out: Path) -> dict[str, float]:
    """Largest |p_comply| and |reward| differences between the remote-code model (loaded from the files copied
    into ``out``, as transformers would) and ``csrm.load(out)`` over :func:`probes`."""
    from csrm.scoring.scorer import Scorer

    remote = importlib.import_module(f"{REMOTE_PACKAGE}.modeling_csrm_clause")
    model = remote.ClauseCSRMModel.from_pretrained(str(out)).eval()
    scorer = Scorer.from_pretrained(out, device="cpu")
    dp = dr = 0.0
    for config, messages, response in probes():
        mine = model.score(config, messages, response)
        theirs = scorer.score(config, messages, response)
        dp = max(dp, abs(mine["p_comply"] - theirs.p_comply))
        dr = max(dr, abs(mine["reward"] - theirs.reward))
    return {"max_abs_p_comply_difference": dp, "max_abs_reward_difference": dr}


def export_clause(model_dir: Path, out: Path, *, report: str | Path | None, verify: bool) -> None:
    """Copy ``model_dir`` into ``out`` with the remote code and ``auto_map``; check and write the card."""
    from csrm import __version__
    from csrm.base.taxonomy import RiskTaxonomy
    from csrm.scoring.model_card import write_card

    shutil.copytree(model_dir, out, dirs_exist_ok=True)
    for name in REMOTE_FILES:
        shutil.copy2(remote_source_dir() / name, out / name)
    path = out / "config.json"
    config: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    if not (config.get("taxonomy") or {}).get("categories"):  # csrm falls back to the default; the copy cannot
        config["taxonomy"] = RiskTaxonomy.default().to_dict()
    config["auto_map"] = dict(AUTO_MAP)
    config["csrm"] = {"exported_from": f"csrm {__version__}",
                      "usage": "AutoModel.from_pretrained(path, trust_remote_code=True).score(config, messages, "
                               "response) -> p_comply, reward, complies (or csrm.load(path))"}
    path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    differences = probe_differences(out) if verify else {}
    worst = max(differences.values(), default=0.0)
    if not worst <= TOLERANCE:
        raise InputError(f"the remote-code model differs from csrm.load by {worst:.3g} on probe items "
                         f"(tolerance {TOLERANCE}); use --format csrm", path=str(model_dir))
    config["csrm"].update(differences or {"max_abs_reward_difference": None})
    path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    write_card(out, model_dir, kind="csrm_clause_remote", report=report,
               max_diff=differences.get("max_abs_reward_difference"),
               p_comply_diff=differences.get("max_abs_p_comply_difference"))
