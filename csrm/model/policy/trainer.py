"""Compose a policy judge: fit the router on the readers' own training data, copy the two readers in, save.

**Router data.** Category units: the units (:func:`csrm.base.rule_text.split_rules`) of the configs the category
reader trained on (the augmentation folder's train examples); rule units: the rules of the generated policies the
rule judge trained on (``rule_data/train.jsonl``). Up to ``max_units`` distinct units of each kind, taken from the
policies in a seeded random order (so the units many policies share, such as stock distractor rules, are in: a
first version sampled distinct units uniformly, missed "Avoid any content about firearms and explosives.", and
routed 55% of held-out rule policies as mixed), are embedded by the frozen encoder and a logistic regression is fitted
(:func:`csrm.model.policy.router.fit_router`). **Held out**: the validation examples' configs and
``rule_data/dev.jsonl``'s policies, units not seen in training: the share of units put on the right side, and
the share of whole policies routed to one reader only (a category config that is routed whole scores exactly as
the category reader scores it; a rule policy likewise). Both are in ``train_results.json``.

**Nothing else is trained**: each reader keeps its weights, calibration and thresholds; their per-config
threshold tables are merged into the judge's (a config's text is its key, so a tuned config keeps its cut).
"""

from __future__ import annotations

import json
import random
import shutil
import time
from pathlib import Path
from typing import Any

import yaml

from csrm.base.errors import InputError
from csrm.base.io import atomic_path, iter_jsonl
from csrm.base.validation import check_model_dir
from csrm.model.policy.args import FAMILY, PolicyJudgeArgs
from csrm.model.policy.router import CATEGORY, RULES, Router, fit_router, policy_units
from csrm.model.policy.saved import PARTS, PolicyJudgeConfig, PolicyJudgeModel
from csrm.model.sentence_embedder import Embed, SentenceEmbedder

CATEGORY_FAMILIES = ("clause", "cross_encoder")
RULE_FAMILIES = ("rule",)


def check_reader(path: str, field: str, families: tuple[str, ...]) -> Path:
    """A saved CSRM folder of one of ``families``; anything else is an InputError naming ``field``."""
    from csrm.model.registry import saved_family

    if not path:
        raise InputError(f"missing: a saved CSRM folder of family {' or '.join(families)}", field=field)
    folder = Path(path)
    if not folder.is_dir():
        raise InputError("folder not found (the policy judge composes local folders)", path=path, field=field)
    check_model_dir(folder, what=field)
    name = saved_family(folder).name
    if name not in families:
        raise InputError(f"is a {name} model; expected family {' or '.join(families)}", path=path, field=field)
    return folder


def category_configs(folder: str) -> tuple[list[str], list[str]]:
    """(train, validation) config texts of an augmentation folder (distinct, in file order)."""
    from csrm.model.data import load_augmented

    if not folder:
        raise InputError("missing: the augmentation folder the category reader trained on", field="dataset_path")
    data = load_augmented(folder, ["train", "validation"])["examples"]
    return tuple(list(dict.fromkeys(data[s]["config_text"])) if data[s] is not None else []  # type: ignore[return-value]
                 for s in ("train", "validation"))


def rule_policies(folder: str) -> tuple[list[str], list[str]]:
    """(train, dev) policies of a rules folder (distinct, in file order)."""
    root = Path(folder) if folder else None
    if root is None or not (root / "train.jsonl").is_file():
        raise InputError("expected the rules folder the rule judge trained on (DIR/rules with train.jsonl)",
                         path=folder or None, field="rule_data")
    out = []
    for name in ("train.jsonl", "dev.jsonl"):
        path = root / name
        rows = iter_jsonl(path) if path.is_file() else []
        out.append(list(dict.fromkeys(str(row.get("policy", "")) for _, row in rows)))
    return out[0], out[1]


def sample_units(policies: list[str], limit: int, rng: random.Random) -> list[str]:
    """Up to ``limit`` distinct units, taken from the policies in a seeded random order: a unit that many policies
    share (a stock distractor rule) is all but sure to be in, as often as users will send it."""
    order = rng.sample(policies, len(policies))
    return policy_units(order)[:limit]


def held_out(router: Router, embed: Embed, category: list[str], rules: list[str], seen: set[str],
             limit: int, rng: random.Random) -> dict[str, Any]:
    """Unit accuracy on units not fitted on, and the share of whole policies routed to their own reader alone."""
    out: dict[str, Any] = {}
    for kind, policies, want in ((CATEGORY, category, True), (RULES, rules, False)):
        policies = rng.sample(policies, min(limit, len(policies)))
        units = [u for u in policy_units(policies) if u not in seen]
        right = (router.probabilities(units, embed) >= router.threshold) == want
        routes = [router.route(p, embed).kind for p in policies]
        out[kind] = {"policies": len(policies), "routed_whole": round(sum(r == kind for r in routes)
                                                                          / max(1, len(routes)), 4),
                     "units": len(units), "unit_accuracy": round(float(right.mean()), 4) if len(units) else None}
    return out


def reader_thresholds(folder: Path) -> dict[str, Any]:
    """``threshold``, ``config_thresholds`` and ``taxonomy`` as a reader's config.json stores them."""
    data = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    return {"threshold": float(data.get("threshold", 0.5)), "config_thresholds": data.get("config_thresholds") or {},
            "taxonomy": data.get("taxonomy")}


def train(args: PolicyJudgeArgs, *, raw_config: dict[str, Any] | None = None, embed: Embed | None = None
          ) -> dict[str, Any]:
    """Fit the router, compose and save to ``args.output_dir`` (module doc); returns what was measured.
    ``embed``: the router's sentence encoder (default the frozen MiniLM; tests pass a small stand-in)."""
    started = time.perf_counter()
    readers = {"category": check_reader(args.category_model, "category_model", CATEGORY_FAMILIES),
               "rules": check_reader(args.rule_model, "rule_model", RULE_FAMILIES)}
    category_train, category_dev = category_configs(args.dataset_path)
    rules_train, rules_dev = rule_policies(args.rule_data)
    rng = random.Random(args.seed)
    category_units = sample_units(category_train, args.max_units, rng)
    rule_units = sample_units(rules_train, args.max_units, rng)
    embed = embed if embed is not None else SentenceEmbedder("minilm")
    router = fit_router(category_units, rule_units, embed)
    fitted = time.perf_counter() - started
    checked = held_out(router, embed, category_dev, rules_dev, set(category_units) | set(rule_units),
                       args.max_units, rng)
    parts = {name: reader_thresholds(folder) for name, folder in readers.items()}
    measured = {"router_units": {CATEGORY: len(category_units), RULES: len(rule_units)}, "held_out": checked,
                "readers": {name: str(folder.resolve()) for name, folder in readers.items()},
                "fit_seconds": round(fitted, 1), "wall_seconds": round(time.perf_counter() - started, 1)}
    config = PolicyJudgeConfig(
        router=router.to_dict(), thresholds={name: part["threshold"] for name, part in parts.items()},
        config_thresholds={**parts["rules"]["config_thresholds"], **parts["category"]["config_thresholds"]},
        taxonomy=parts["category"]["taxonomy"], composed=measured)
    with atomic_path(args.output_dir, is_dir=True, command="train") as tmp:
        for name, folder in readers.items():
            shutil.copytree(folder, tmp / PARTS[name], dirs_exist_ok=True)
        PolicyJudgeModel(config, tmp).save_config(tmp)
        summary = {"architecture": FAMILY, "output_dir": str(Path(args.output_dir).expanduser().resolve()),
                   **measured}
        (tmp / "train_results.json").write_text(json.dumps(summary, indent=2) + "\n")
        if raw_config is not None:
            (tmp / "train_config.yaml").write_text(yaml.safe_dump(raw_config, sort_keys=False))
    return measured
