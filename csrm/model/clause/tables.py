"""The clause trainer's feature tables: every split encoded once into tensors indexed by row (stage 1 of
:mod:`csrm.model.clause.trainer`), plus the two extra sources of supervision, distractor clauses (policy
perturbation for the reader) and pseudo-labelled prompts (category targets for the matcher)."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import torch

from csrm.base.errors import InputError
from csrm.base.io import iter_jsonl, read_text
from csrm.base.paths import data_dir
from csrm.base.taxonomy import RiskTaxonomy
from csrm.model.clause.features import FeatureEncoder, content_windows
from csrm.model.clause.modeling import SEVERITY_LEVELS, ClauseFeatures, ContentFeatures

logger = logging.getLogger(__name__)


@dataclass
class Table:
    """All features of one split, indexed by row: distinct configs, distinct contents, and the rows' targets."""

    clauses: ClauseFeatures  # one row per distinct config
    content: ContentFeatures  # one row per distinct content (examples, then pair sides)
    config_row: torch.Tensor  # [N] example -> config row
    content_row: torch.Tensor  # [N] example -> content row
    label: torch.Tensor  # [N] 1 = complies
    allow: torch.Tensor  # [C, M, 3] per config: allowed up to severity s (structured configs)
    structured: torch.Tensor  # [C] config has a structured allow map
    categories: torch.Tensor  # [N, M + 1] target category distribution of the content ("none" last)
    severity: torch.Tensor  # [N] 0-2 = severity 1-3, -1 = no category
    refusal: torch.Tensor  # [N] 1 = the response is a refusal, -1 = request screening (no gate target)
    pair_config: torch.Tensor  # [P]
    pair_chosen: torch.Tensor  # [P] content rows
    pair_rejected: torch.Tensor  # [P]
    pair_margin: torch.Tensor  # [P]


def _select(features, rows: torch.Tensor):
    return type(features)(*(getattr(features, f)[rows] for f in features.__dataclass_fields__))


def to_device(features, device: torch.device | str):
    """A feature dataclass (:class:`Table`, :class:`ClauseFeatures`, :class:`ContentFeatures`) with every tensor
    on ``device``: the cache is stored on the CPU and the heads train where the accelerator puts them."""
    if isinstance(features, torch.Tensor):
        return features.to(device)
    return type(features)(*(to_device(getattr(features, f), device) for f in features.__dataclass_fields__))


def build_table(encoder: FeatureEncoder, examples, pairs, taxonomy: RiskTaxonomy, *, blind: bool) -> Table:
    """Encode one split's examples (and pairs) into a :class:`Table`."""
    names = taxonomy.names
    max_chars = encoder.model.config.max_segment_chars
    configs: dict[str, int] = {}
    policies: dict[str, str] = {}
    contents: dict[tuple, int] = {}
    windows: list[list[tuple[str, bool]]] = []

    def config_id(text: str, policy: str) -> int:
        text = "" if blind else text
        if text not in configs:
            configs[text] = len(configs)
            policies[text] = "" if blind else policy
        return configs[text]

    def content_id(messages, response) -> int:
        key = (json.dumps(messages, sort_keys=True), response)
        if key not in contents:
            contents[key] = len(contents)
            windows.append(content_windows(messages, response, max_chars))
        return contents[key]

    cfg_rows, cnt_rows, labels, cats, sev, refusal = [], [], [], [], [], []
    for row in examples:
        cfg_rows.append(config_id(row["config_text"], row["config_policy"]))
        cnt_rows.append(content_id(row["messages"], row["response"]))
        labels.append(float(row["label"]))
        target = [float(n in row["categories"]) for n in names]
        positive = row["severity"] > 0 and any(target)
        target.append(0.0 if positive else 1.0)
        cats.append([t / sum(target) for t in target])
        sev.append(int(row["severity"]) - 1 if positive else -1)
        refusal.append(-1 if row["response"] is None else int(bool(row["is_refusal"])))
    p_cfg, p_ch, p_rj, p_m = [], [], [], []
    for row in pairs if pairs is not None else []:
        p_cfg.append(config_id(row["config_text"], ""))
        p_ch.append(content_id(row["messages"], row["chosen"]))
        p_rj.append(content_id(row["messages"], row["rejected"]))
        p_m.append(float(row["margin"]))
    distinct = list(configs)
    allow = torch.zeros(len(distinct), len(names), SEVERITY_LEVELS)
    structured = torch.zeros(len(distinct), dtype=torch.bool)
    for i, text in enumerate(distinct):
        if policies[text]:
            policy = json.loads(policies[text])
            structured[i] = True
            for m, name in enumerate(names):
                for s in range(SEVERITY_LEVELS):
                    allow[i, m, s] = float(policy.get(name, 0) >= s + 1)
    long = lambda v: torch.tensor(v, dtype=torch.long)  # noqa: E731
    return Table(encoder.clause_features(distinct), encoder.content_features(windows), long(cfg_rows),
                 long(cnt_rows), torch.tensor(labels), allow, structured, torch.tensor(cats), long(sev),
                 long(refusal), long(p_cfg), long(p_ch), long(p_rj), torch.tensor(p_m))


def shared_data_file(path: str, field: str, without: str) -> Path | None:
    """``path`` with ``{data_dir}`` expanded; None, with a warning naming what training does ``without`` it, when
    a ``{data_dir}`` path is absent (a fresh clone without the shared data); any other missing path is an error
    naming ``field``."""
    resolved = Path(path.replace("{data_dir}", str(data_dir())))
    if resolved.is_file():
        return resolved
    if "{data_dir}" in path:
        logger.warning("%s not found: %s", resolved, without)
        return None
    raise InputError("file not found", path=str(resolved), field=field)


@dataclass
class PseudoLabels:
    """Unlabelled prompts' pooled embeddings ``x`` [P, D] and the category the zero-shot similarity gives each
    ``target`` [P] (only prompts whose best category beats the runner-up by the margin)."""

    x: torch.Tensor
    target: torch.Tensor


def read_prompts(path: str) -> list[str] | None:
    """Prompts from a JSON list of strings or JSONL with ``prompt``/``text`` (``{data_dir}`` expanded); None,
    with a warning, when a ``{data_dir}`` path is absent (a fresh clone without the shared data)."""

    resolved = shared_data_file(path, "pseudo_label_prompts", "the matcher trains without pseudo labels")
    if resolved is None:
        return None
    if resolved.suffix == ".jsonl":
        prompts = [str(row.get("prompt") or row.get("text") or "") for _, row in iter_jsonl(resolved)]
    else:
        prompts = json.loads(read_text(resolved))
        if not isinstance(prompts, list) or not all(isinstance(p, str) for p in prompts):
            raise InputError("expected a JSON list of strings", path=str(resolved), field="pseudo_label_prompts")
    prompts = list(dict.fromkeys(p for p in prompts if p.strip()))
    if not prompts:
        raise InputError("no prompts found", path=str(resolved), field="pseudo_label_prompts")
    return prompts


def pseudo_labels(encoder: FeatureEncoder, prompts: list[str], *, limit: int, margin: float, seed: int
                  ) -> PseudoLabels:
    """Encode a seeded sample of ``limit`` prompts and label each with its most similar category (by the
    model's anchors, as the zero-shot matcher reads them) where that beats the runner-up by ``margin``."""
    order = torch.randperm(len(prompts), generator=torch.Generator().manual_seed(seed))[:limit].tolist()
    sample = [prompts[i] for i in order]
    x = encoder.content_features([[(p, False)] for p in sample]).x[:, 0]
    top = (x @ encoder.model.anchors.T).topk(2, dim=-1)
    keep = (top.values[:, 0] - top.values[:, 1]) > margin
    return PseudoLabels(x[keep].clone(), top.indices[keep, 0].clone())


def distractor_pool(encoder: FeatureEncoder, path: str) -> ClauseFeatures | None:
    """Clause features of rules that grant or forbid nothing in the taxonomy (``path``: JSONL with a ``rules``
    or ``text`` field per line, e.g. DynaGuard's IFEval rule lists, or a text file), as one row of distinct
    clauses ([1, P, ...]); the reader learns to ignore them (:func:`sample_distractors`). A path under
    ``{data_dir}`` that is absent (a fresh clone without the shared data) is skipped with a warning; any other
    missing path is an error."""

    resolved = shared_data_file(path, "distractor_rules", "the reader trains without distractors")
    if resolved is None:
        return None
    if resolved.suffix == ".jsonl":
        texts = [str(row.get("rules") or row.get("text") or "") for _, row in iter_jsonl(resolved)]
    else:
        texts = [read_text(resolved)]
    clauses = list(dict.fromkeys(t for text in texts for t in encoder.clause_texts(text) if t.strip()))
    if not clauses:
        raise InputError("no rules found", path=str(resolved), field="distractor_rules")
    return encoder.clause_pool(clauses)


def sample_distractors(pool: ClauseFeatures, most: int, generator: torch.Generator) -> ClauseFeatures | None:
    """0..``most`` random clauses of the distractor ``pool`` ([1, k, ...]; None for 0), appended to every config
    of a reader batch (:meth:`ClauseCSRMModel.read_config`'s ``shared``): policy perturbation. Long policies
    carry many rules unrelated to the taxonomy; with a soft maximum over clauses, each adds a little to
    "permits", so without this the reader let 200 IFEval rules permit every category (measured: P(allowed)
    0.63-0.76 for all eight)."""
    k = int(torch.randint(0, most + 1, (1,), generator=generator))
    if k == 0:
        return None
    idx = torch.randint(pool.e.shape[1], (k,), generator=generator)
    return ClauseFeatures(*(getattr(pool, name)[:, idx] for name in ("e", "ms", "cos", "mask")))
