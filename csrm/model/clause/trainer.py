"""Train a clause-reading CSRM (:mod:`csrm.model.clause.modeling`) on an augmentation output: frozen features, small heads.

``csrm train CONFIG`` with ``architecture: clause`` (the default) lands here through :mod:`csrm.model.registry`;
the settings are :class:`~csrm.model.clause.args.ClauseTrainConfig`. Three steps (the feature tables are
:mod:`csrm.model.clause.tables`):

1. **Features.** Every distinct clause of every config and every distinct content window is encoded once by
   the frozen encoder (:class:`~csrm.model.clause.features.FeatureEncoder`). Under several processes the main
   process encodes first and writes ``<checkpoint_dir>/features.pt``; the others read it
   (``main_process_first``), so a cluster encodes once.
2. **Reader** (``reader_steps``): the config reader learns ``A_m^s`` (category ``m`` allowed up to severity
   ``s``) from the structured allow map every synthesised config carries: clause-level supervision for free.
3. **Judge** (``num_train_epochs``): with the reader frozen, the content matcher, severity, engagement and
   bias heads learn from the joint objective of :mod:`csrm.model.objective` (compliance BCE + Bradley–Terry on the
   pairs) plus ``aux_weight`` × the content's labelled categories, severity and refusal flag, plus
   ``pseudo_weight`` × the category of unlabelled prompts as the zero-shot similarity reads it
   (:func:`pseudo_labels`; self-training that keeps the matcher's residual from overwriting the categories the
   labels do not cover). The labelled-category cross-entropy is a softmax over the categories some training row
   is labelled with (plus "none"): a source without drug or weapon labels is no evidence that its content is not
   about drugs or weapons. Chosen on a leave-one-category-out dev protocol (drop every training row of one
   labelled category, score the validation rows of that category; README): transfer to the held-out category
   +1.9 AUROC, the validation split -0.1.

Both steps run under :class:`accelerate.Accelerator`, so ``torchrun``/``accelerate launch`` data-parallel
training uses this same code (each rank takes its share of every epoch; gradients are averaged by DDP). The
trainable heads have about 20k parameters: ZeRO sharding has nothing to shard, so a DeepSpeed config is not
used by this architecture (the frozen encoder only runs inference). Optimisation is mini-batch AdamW on
in-memory tensors; an epoch over 6k examples takes about a second on 2 CPU cores.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import resource
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
import yaml
from accelerate import Accelerator
from torch import nn
from transformers import AutoConfig, AutoTokenizer, set_seed

from csrm.base.errors import InputError
from csrm.base.io import atomic_path, load_tensor_cache
from csrm.base.metrics import classification_metrics, pair_accuracy
from csrm.base.paths import resolve_model_name
from csrm.model.clause.args import ClauseTrainConfig
from csrm.model.clause.features import FeatureEncoder
from csrm.model.clause.modeling import ClauseCSRMModel, ClauseFeatures, ContentFeatures
from csrm.model.clause.tables import (
    PseudoLabels,
    Table,
    _select,
    build_table,
    distractor_pool,
    pseudo_labels,
    read_prompts,
    sample_distractors,
    to_device,
)
from csrm.model.data import load_augmented
from csrm.model.objective import csrm_loss

logger = logging.getLogger(__name__)


class ReaderStep(nn.Module):
    """Stage 2's trainable module: the config reader; forward = its BCE on a batch of structured configs."""

    def __init__(self, model: ClauseCSRMModel):
        super().__init__()
        self.model = model
        self.reader_proj, self.reader = model.reader_proj, model.reader

    def forward(self, clauses: ClauseFeatures, allow: torch.Tensor, shared: ClauseFeatures | None = None
                ) -> torch.Tensor:
        allowed, _ = self.model.read_config(clauses, shared)
        return F.binary_cross_entropy(allowed.clamp(1e-6, 1 - 1e-6), allow)


class JudgeStep(nn.Module):
    """Stage 3's trainable module: matcher, severity, engagement and bias; forward = the joint loss."""

    def __init__(self, model: ClauseCSRMModel, cfg: ClauseTrainConfig, aux_weight: float):
        super().__init__()
        self.model, self.cfg, self.aux_weight = model, cfg, aux_weight
        self.heads = nn.ModuleList([model.category_head, model.null_head, model.request_null_head,
                                    model.severity_head, model.engage_head])
        self.match_scale, self.bias = model.match_scale, model.bias

    def forward(self, table: Table, allowed: torch.Tensor, rows: torch.Tensor, pair_rows: torch.Tensor,
                pseudo: PseudoLabels | None = None) -> tuple[torch.Tensor, dict]:
        """The loss of one batch; ``allowed`` [C, M, 3] is the frozen reader's output for every config;
        ``pseudo``: this batch's pseudo-labelled prompts (the category cross-entropy of their residual-corrected
        category logits, the "none" class left out: an unlabelled prompt may be harmless)."""
        m = self.model
        out = m(None, _select(table.content, table.content_row[rows]), table.config_row[rows], allowed=allowed)
        if len(pair_rows):
            pair_cfg = table.pair_config[pair_rows]
            chosen = m(None, _select(table.content, table.pair_chosen[pair_rows]), pair_cfg, allowed=allowed).rewards
            rejected = m(None, _select(table.content, table.pair_rejected[pair_rows]), pair_cfg,
                         allowed=allowed).rewards
        else:
            chosen = rejected = out.rewards.new_zeros(0)
        parts = csrm_loss(out.compliance_logits, table.label[rows], chosen, rejected, table.pair_margin[pair_rows],
                          compliance_weight=self.cfg.compliance_weight, reward_weight=self.cfg.reward_weight,
                          margin_scale=self.cfg.margin_scale,
                          center_rewards_coefficient=self.cfg.center_rewards_coefficient)
        content = _select(table.content, table.content_row[rows])
        q, severity, engage = m.match_content(content)
        # the cross-entropy runs over the training data's label space only: a category no row is labelled with
        # says nothing either way, and pushing it down teaches the residual to pull such content into the
        # labelled categories (module doc); the target is met by the window that carries it most
        labelled = (table.categories > 0).any(0)
        q = q[..., labelled] / q[..., labelled].sum(-1, keepdim=True).clamp(min=1e-12)
        q_item = (q * content.mask[..., None]).max(1).values.clamp(min=1e-6)
        aux = -(table.categories[rows][:, labelled] * q_item.log()).sum(-1).mean()
        sev_target = table.severity[rows]
        if (sev_target >= 0).any():
            sev_item = (severity * content.mask[..., None]).sum(1) / content.mask.sum(1, keepdim=True)
            aux = aux + F.nll_loss(sev_item[sev_target >= 0].clamp(min=1e-6).log(), sev_target[sev_target >= 0])
        gate_target = table.refusal[rows]
        if (gate_target >= 0).any():
            engaged = (engage * content.mask).sum(1) / content.mask.sum(1)
            aux = aux + F.binary_cross_entropy(engaged[gate_target >= 0].clamp(1e-6, 1 - 1e-6),
                                               1.0 - gate_target[gate_target >= 0].float())
        loss = parts.loss + self.aux_weight * aux
        logged = {"bce": float(parts.bce.detach()), "bt": float(parts.bradley_terry.detach()),
                  "aux": float(aux.detach())}
        if pseudo is not None and len(pseudo.target):
            pseudo_loss = F.cross_entropy(m.category_logits(pseudo.x), pseudo.target)
            loss = loss + self.cfg.pseudo_weight * pseudo_loss
            logged["pseudo"] = float(pseudo_loss.detach())
        return loss, logged


def _feature_key(cfg: ClauseTrainConfig, model: ClauseCSRMModel) -> str:
    """Cache key of a feature table: the data (its manifest, else its file sizes and times), the encoder and
    every setting that changes which texts are encoded."""
    root = Path(cfg.dataset_path)
    manifest = root / "manifest.json"
    data = manifest.read_text() if manifest.is_file() else json.dumps(sorted(
        (str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*") if p.is_file()))
    settings = [cfg.model_name_or_path, cfg.backbone_config, cfg.blind_config, cfg.train_split, cfg.eval_split,
                cfg.distractor_rules, cfg.pseudo_label_prompts, cfg.max_pseudo_prompts, cfg.pseudo_margin, cfg.seed,
                cfg.max_train_examples, cfg.max_train_pairs, model.config.max_length, model.config.max_clause_chars,
                model.config.max_segment_chars, model.config.taxonomy]
    return hashlib.sha1(json.dumps([data, settings], sort_keys=True, default=str).encode()).hexdigest()[:16]


def build_clause_model(cfg: ClauseTrainConfig) -> tuple[ClauseCSRMModel, Any]:
    """(model with anchors computed, tokenizer) from a pretrained encoder or ``backbone_config``."""
    tokenizer = AutoTokenizer.from_pretrained(resolve_model_name(cfg.tokenizer_name_or_path or
                                                                 ("minilm" if cfg.backbone_config else
                                                                  cfg.model_name_or_path)))
    options = {"max_length": min(cfg.max_length, 512), "reader_dim": cfg.reader_dim,
               "blind_config": cfg.blind_config}
    if cfg.backbone_config is not None:
        spec = dict(cfg.backbone_config)
        model_type = spec.pop("model_type", None)
        if not model_type:
            raise InputError("needs a model_type (e.g. bert)", field="backbone_config")
        spec.setdefault("vocab_size", len(tokenizer))
        model = ClauseCSRMModel.from_backbone_config(AutoConfig.for_model(model_type, **spec), tokenizer=tokenizer,
                                                     **options)
    else:
        model = ClauseCSRMModel.from_backbone(cfg.model_name_or_path, tokenizer=tokenizer, **options)
    return model, tokenizer


def _batches(n: int, size: int, generator: torch.Generator, rank: int, world: int) -> list[torch.Tensor]:
    """This rank's share of a seeded shuffle of ``range(n)``, in batches of ``size`` (same count on every rank)."""
    order = torch.randperm(n, generator=generator)
    steps = max(1, math.ceil(n / (size * world)))
    out = []
    for step in range(steps):  # each step's global batch is dealt round-robin, so no rank gets an empty share
        chunk = order[step * size * world:(step + 1) * size * world]
        if len(chunk) < world:
            chunk = torch.cat([chunk, order[: world - len(chunk)]])
        out.append(chunk[rank::world])
    return out


def evaluate_table(model: ClauseCSRMModel, table: Table) -> dict[str, float]:
    """``eval_*`` metrics of violation (label 0) over ``table``'s rows, and pair accuracy where it has pairs."""
    with torch.no_grad():
        rows = torch.arange(len(table.label))
        out = model(table.clauses, _select(table.content, table.content_row), table.config_row[rows])
        p_violation = (1 - torch.sigmoid(out.compliance_logits)).cpu().numpy()
        metrics = classification_metrics((1 - table.label.cpu().numpy()).astype(int).tolist(),
                                         p_violation.tolist())
        if len(table.pair_config):
            chosen = model(table.clauses, _select(table.content, table.pair_chosen), table.pair_config).rewards
            rejected = model(table.clauses, _select(table.content, table.pair_rejected), table.pair_config).rewards
            metrics["pair_accuracy"] = pair_accuracy(chosen.tolist(), rejected.tolist())
    return {f"eval_{k}": float(v) for k, v in metrics.items()}


def feature_tables(cfg: ClauseTrainConfig, model: ClauseCSRMModel, tokenizer,
                   accelerator: Accelerator) -> tuple[dict[str, Any], FeatureEncoder]:
    """Stage 1: the feature tables of a run (``train``, ``eval``, ``distractors``, ``pseudo``) from the cache in
    ``checkpoint_dir`` (keyed by :func:`_feature_key`), else encoded from ``dataset_path`` and cached; under
    several processes the main process encodes first and the others read its cache."""
    encoder = FeatureEncoder(model, tokenizer)
    cache = Path(cfg.checkpoint_dir) / f"features-{_feature_key(cfg, model)}.pt"
    with accelerator.main_process_first():
        if cache.is_file():
            return load_tensor_cache(cache, (Table, ClauseFeatures, ContentFeatures, PseudoLabels)), encoder
        data = load_augmented(cfg.dataset_path, [cfg.train_split] + ([cfg.eval_split] if cfg.eval_split else []))
        examples, pairs = data["examples"][cfg.train_split], data["pairs"][cfg.train_split]
        if cfg.max_train_examples:
            examples = examples.select(range(min(cfg.max_train_examples, len(examples))))
        if pairs is not None and cfg.max_train_pairs:
            pairs = pairs.select(range(min(cfg.max_train_pairs, len(pairs))))
        tables = {"train": build_table(encoder, examples, pairs, model.taxonomy, blind=cfg.blind_config)}
        pool = distractor_pool(encoder, cfg.distractor_rules) if cfg.distractor_rules else None
        if pool is not None:
            tables["distractors"] = pool
        prompts = read_prompts(cfg.pseudo_label_prompts) if cfg.pseudo_label_prompts and not cfg.blind_config \
            else None
        if prompts:
            tables["pseudo"] = pseudo_labels(encoder, prompts, limit=cfg.max_pseudo_prompts,
                                             margin=cfg.pseudo_margin, seed=cfg.seed)
        eval_examples = data["examples"].get(cfg.eval_split) if cfg.eval_split else None
        if eval_examples is not None and len(eval_examples):
            tables["eval"] = build_table(encoder, eval_examples, data["pairs"].get(cfg.eval_split),
                                         model.taxonomy, blind=cfg.blind_config)
        if accelerator.is_main_process:
            cache.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(cache) as tmp:
                torch.save({name: to_device(table, "cpu") for name, table in tables.items()}, tmp)
    return tables, encoder


def train_judge(model: ClauseCSRMModel, cfg: ClauseTrainConfig, tables: dict[str, Any], accelerator: Accelerator, *,
                seed: int) -> tuple[JudgeStep, dict[str, Any]]:
    """Stage 3: the matcher, "none", severity, engagement heads and bias on ``tables["train"]`` with the reader
    frozen, from :meth:`~ClauseCSRMModel.reset_judge_heads` under ``seed`` (its own RNG: the stage is
    reproducible from the features and the reader alone, which :mod:`tools.category_transfer` relies on).
    Returns the prepared :class:`JudgeStep` and ``{log, seconds, examples_seen, pairs_seen}``."""
    t0 = time.perf_counter()
    train = tables["train"]
    generator = torch.Generator().manual_seed(seed)
    rank, world = accelerator.process_index, accelerator.num_processes
    torch.manual_seed(seed)
    model.reset_judge_heads()
    model.requires_grad_(False)
    judge = JudgeStep(model, cfg, cfg.aux_weight)
    for part in (judge.heads, judge.match_scale, judge.bias):
        part.requires_grad_(True)
    with torch.no_grad():  # the residual reads content relative to the mean training window
        model.content_mean.copy_(train.content.x[train.content.mask].mean(0))
    optimizer = torch.optim.AdamW([p for p in judge.parameters() if p.requires_grad], lr=cfg.learning_rate,
                                  weight_decay=0.0)
    judge, optimizer = accelerator.prepare(judge, optimizer)
    with torch.no_grad():
        allowed = model.read_config(train.clauses)[0]
    n_pairs = len(train.pair_config)
    log: list[dict[str, Any]] = []
    seen_examples = seen_pairs = 0
    for epoch in range(cfg.num_train_epochs):
        batches = _batches(len(train.label), cfg.per_device_train_batch_size, generator, rank, world)
        pair_batches = (_batches(n_pairs, cfg.pairs_per_batch, generator, rank, world) if n_pairs
                        else [torch.zeros(0, dtype=torch.long)] * len(batches))
        for i, rows in enumerate(batches):
            pair_rows = pair_batches[i % len(pair_batches)]
            pseudo = None
            if "pseudo" in tables and len(tables["pseudo"].target) and cfg.pseudo_weight > 0:  # as many as examples
                picks = torch.randint(len(tables["pseudo"].target), (cfg.per_device_train_batch_size * world,),
                                      generator=generator)
                pseudo = _select(tables["pseudo"], picks[rank::world].to(tables["pseudo"].target.device))
            loss, parts = judge(train, allowed, rows, pair_rows, pseudo)
            accelerator.backward(loss)
            optimizer.step()
            optimizer.zero_grad()
            seen_examples += len(rows)
            seen_pairs += len(pair_rows)
        log.append({"stage": "judge", "epoch": epoch, "loss": float(loss.detach()), **parts})
    model.requires_grad_(False)
    return judge, {"log": log, "seconds": round(time.perf_counter() - t0, 2), "examples_seen": seen_examples * world,
                   "pairs_seen": seen_pairs * world}


def train(cfg: ClauseTrainConfig, *, raw_config: dict[str, Any] | None = None) -> dict[str, Any]:
    """Train and save a clause-reading CSRM (module doc); returns a summary like :func:`csrm.model.cross_encoder.train.train`."""
    set_seed(cfg.seed)
    accelerator = Accelerator(cpu=cfg.use_cpu)
    start = time.perf_counter()
    model, tokenizer = build_clause_model(cfg)
    model.to(accelerator.device)
    tables, encoder = feature_tables(cfg, model, tokenizer, accelerator)
    feature_seconds = time.perf_counter() - start
    tables = {name: to_device(table, accelerator.device) for name, table in tables.items()}
    train = tables["train"]
    generator = torch.Generator().manual_seed(cfg.seed)
    rank, world = accelerator.process_index, accelerator.num_processes
    log: list[dict[str, Any]] = []

    # stage 2: the config reader, on the structured configs
    reader_seconds = 0.0
    structured = torch.nonzero(train.structured).squeeze(-1)
    if len(structured) and cfg.reader_steps > 0 and not cfg.blind_config:
        t0 = time.perf_counter()
        model.requires_grad_(False)  # only the reader trains here (DDP needs every trainable weight to get a grad)
        model.reader_proj.requires_grad_(True)
        model.reader.requires_grad_(True)
        step_module = ReaderStep(model)
        optimizer = torch.optim.AdamW([p for p in step_module.parameters() if p.requires_grad],
                                      lr=cfg.reader_learning_rate, weight_decay=0.0)
        step_module, optimizer = accelerator.prepare(step_module, optimizer)
        for step in range(cfg.reader_steps):
            picks = structured[torch.randint(len(structured), (cfg.reader_batch_size,), generator=generator)]
            share = picks[rank::world]
            distractors = None
            if "distractors" in tables:  # a curriculum: none at first, up to max_distractors by half-way
                most = min(cfg.max_distractors, cfg.max_distractors * 2 * step // max(1, cfg.reader_steps))
                distractors = sample_distractors(tables["distractors"], most, generator)
            loss = step_module(_select(train.clauses, share), train.allow[share], distractors)
            accelerator.backward(loss)
            optimizer.step()
            optimizer.zero_grad()
            if step % max(1, cfg.reader_steps // 5) == 0 or step == cfg.reader_steps - 1:
                log.append({"stage": "reader", "step": step, "loss": float(loss.detach())})
        reader_seconds = time.perf_counter() - t0
    # stage 3: matcher, severity, engagement, bias (reader frozen)
    judge, judged = train_judge(model, cfg, tables, accelerator, seed=cfg.seed)
    log.extend(judged["log"])
    eval_metrics = evaluate_table(model, tables["eval"]) if "eval" in tables else {}
    summary = {
        "architecture": "clause",
        "output_dir": str(Path(cfg.output_dir).expanduser().resolve()),
        "feature_seconds": round(feature_seconds, 2),
        "reader_seconds": round(reader_seconds, 2),
        "judge_seconds": judged["seconds"],
        "train_seconds": round(time.perf_counter() - start, 2),
        "examples_seen": judged["examples_seen"],
        "pairs_seen": judged["pairs_seen"],
        "distinct_configs": int(len(train.structured)),
        "distinct_contents": int(len(train.content.mask)),
        "pseudo_labelled_prompts": int(len(tables["pseudo"].target)) if "pseudo" in tables else 0,
        "encoded_texts": encoder.stats["encoded"],
        "windows_at_max_length": encoder.stats["at_max_length"],
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "log": log,
        "eval": eval_metrics,
    }
    if accelerator.is_main_process:
        with atomic_path(cfg.output_dir, is_dir=True, command="train") as tmp:
            accelerator.unwrap_model(judge).model.save_pretrained(tmp)
            tokenizer.save_pretrained(tmp)
            (tmp / "train_results.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
            if raw_config is not None:
                (tmp / "train_config.yaml").write_text(yaml.safe_dump(raw_config, sort_keys=False))
    accelerator.wait_for_everyone()
    logger.info("clause CSRM trained in %.1f s: %s", summary["train_seconds"], np.round(
        [eval_metrics.get("eval_auroc", float("nan"))], 3))
    return summary
