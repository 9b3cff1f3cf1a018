"""The clause-reading CSRM: a frozen text encoder, a config reader and a content matcher, combined by the
compliance rule.

Why this shape. End-to-end cross-encoders trained on CPU learned content priors, not the config (AUROC 0.55 on
CoSAlign-Test's unseen configs), and they truncated long policies. Matching content to a category's *words* with
a frozen sentence encoder transfers to categories without labels (0.98 zero-shot); training that overwrites
the encoder loses it. So the encoder stays frozen, every input is short (a clause, a content window), and the
trained parts are small heads that mirror :mod:`csrm.base.compliance`:

1. **Config reader** (``A``): each clause ``k`` of the config (:mod:`csrm.model.clause.clauses`) is compared with each
   taxonomy category ``m`` by two scalars that carry no category identity, ``ms_km`` (late interaction: the
   category name's tokens matched to the clause's tokens, MaxSim) and ``cos_km`` (pooled clause vs "name:
   definition"), plus a low-dimensional projection of the clause's own embedding (its stance: permits,
   prohibits, limits severity). A small MLP gives logits ``permit_km^s`` (allowed up to severity ``s`` = 1..3)
   and ``prohibit_km``, pooled over clauses by a soft maximum (logsumexp);
   ``A_m^s = σ(LSE_k permit_km^s) · (1 − σ(LSE_k prohibit_km))``. A category no clause permits is
   denied, as the compliance rule says.
2. **Content matcher** (``q``): each content window ``x`` (a request, a response, every earlier agent turn)
   gets ``q = softmax([τ·cos(x, t_1..M) + U (x − μ), null(x)])``: which category it falls under, by similarity
   to the category's text (plus a learned per-category residual ``U`` on the window minus the mean training
   window ``μ``, :meth:`ClauseCSRMModel.category_logits`; ``U`` zero at initialisation), or none.
   The residual alone overfits the labelled categories: trained on labels that cover five of the eight CoSA
   categories, it pulled content about drugs and weapons into the labelled ones (CoSAlign-Test unseen AUROC
   0.964 -> 0.919, augmented validation 0.882 -> 0.930). So it is also trained on *unlabelled* prompts
   pseudo-labelled by the zero-shot similarity itself (``pseudo_label_prompts``: every category, labelled or
   not, gets targets that agree with its words), which kept both (0.968 and 0.923 in the same comparison).
   ``null(x)`` is a linear "none" head, one for responses and one for requests (``request_null_head``): the
   two kinds of content come from different sources with different base rates (the shared recipe's requests
   are CoSAlign prompts, 96% harmful; its responses moderation texts, 57% harmless). With one head shared,
   the request side inherited a content prior about which harmful topics the *responses* flagged, and
   assigned "none" to harmful prompts of categories no request was labelled with (CoSAlign-Test unseen AUROC
   0.971; with "none" switched off for requests 0.983). Separate heads: 0.976, augmented validation
   0.923 -> 0.933 (three seeds each, same features). A checkpoint saved with one head loads with both equal.
   A severity distribution ``p(s|x)`` and an engagement gate ``g(x)`` (1 − P(refusal)) are linear heads.
3. **Rule**: window ``j`` violates with ``v_j = g_j Σ_m q_jm Σ_s p_j(s) (1 − A_m^s)``; the item complies iff no
   window violates: ``P(comply) = Π_j (1 − v_j)``, returned as a logit (+ a learned bias) that temperature
   scaling calibrates.
4. **Reward** = −E[error score] under the same quantities (:mod:`csrm.base.compliance`): ``1 − g`` for not helping,
   ``0.1`` per allowed category used, ``2 + E[s]`` per violated one. It ranks helpful-compliant first and, among
   violations, the more severe lower; the Bradley–Terry pair loss tunes it.

Everything is computed from per-text features (:mod:`csrm.model.clause.features`): a config's clauses are encoded
once for any number of responses, a response once for any number of configs, and nothing is truncated.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoConfig, AutoModel, PretrainedConfig, PreTrainedModel
from transformers.configuration_utils import SubConfigSpec

from csrm.base.compliance import ALLOWED_CATEGORY_COST, UNHELPFUL_COST, VIOLATION_BASE
from csrm.base.paths import resolve_model_name
from csrm.base.taxonomy import RiskTaxonomy
from csrm.model.outputs import CSRMOutput

SEVERITY_LEVELS = 3
EPS = 1e-6


class ClauseCSRMConfig(PretrainedConfig):
    """Configuration of a clause-reading CSRM: the encoder's config plus head sizes and calibration."""

    model_type = "csrm_clause"
    sub_configs_defaults = {"backbone": SubConfigSpec(config_class=AutoConfig, model_type="bert")}

    backbone: PretrainedConfig | dict | None = None
    reader_dim: int = 32
    max_length: int = 256
    max_clause_chars: int = 400
    max_segment_chars: int = 600
    temperature: float = 1.0
    # request screening (no response) has its own temperature when calibration had enough of both kinds: the
    # two tasks are confident differently (shared recipe: T 0.88 for requests, 1.32 for responses, 1.06 joint;
    # CoSAlign-Test unseen ECE 0.087 with the joint temperature, 0.055 with the request one). None = temperature.
    request_temperature: float | None = None
    threshold: float = 0.5
    config_thresholds: dict | None = None
    taxonomy: dict | None = None
    blind_config: bool = False



def item_temperatures(temperature: float, request_temperature: float | None, is_request) -> torch.Tensor:
    """Each item's calibration temperature: ``request_temperature`` (if set) for request screening,
    ``temperature`` otherwise (``is_request``: one bool per item)."""
    request = torch.as_tensor(is_request, dtype=torch.bool)
    return torch.where(request, float(request_temperature or temperature), float(temperature)).double()


def word_mask(tokenizer, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """True at real word tokens: not padding and not a special token (BERT's [CLS]/[SEP], a decoder's BOS/EOS).
    Matching runs over words, not markers; found by id, so encoders with and without leading markers (MiniLM,
    SmolLM2) are treated alike."""
    special = torch.tensor(sorted(tokenizer.all_special_ids), dtype=input_ids.dtype, device=input_ids.device)
    return attention_mask.bool() & ~torch.isin(input_ids, special)


@dataclass
class ClauseFeatures:
    """Features of one batch of configs: clause embeddings ``e`` [C, K, D], name MaxSim ``ms`` and anchor
    cosine ``cos`` [C, K, M], and the clause mask [C, K]."""

    e: torch.Tensor
    ms: torch.Tensor
    cos: torch.Tensor
    mask: torch.Tensor


@dataclass
class ContentFeatures:
    """Features of one batch of contents: window embeddings ``x`` [N, S, D], mask [N, S], and ``engage``
    [N, S] (False for windows judged without the gate, i.e. request screening)."""

    x: torch.Tensor
    mask: torch.Tensor
    gated: torch.Tensor


class ClauseCSRMModel(PreTrainedModel):
    """Frozen encoder + config reader + content matcher (module doc)."""

    config_class = ClauseCSRMConfig
    base_model_prefix = "backbone"
    _no_split_modules: list[str] = []

    def __init__(self, config: ClauseCSRMConfig, backbone: PreTrainedModel | None = None):
        super().__init__(config)
        self.backbone = backbone if backbone is not None else AutoModel.from_config(config.backbone)
        self.backbone.requires_grad_(False)
        self.backbone.eval()  # frozen: no dropout in the features, also for an encoder built from a config
        dim = config.backbone.hidden_size
        taxonomy = self.taxonomy
        n = len(taxonomy.names)
        self.reader_proj = nn.Linear(dim, config.reader_dim)
        self.reader = nn.Sequential(nn.Linear(config.reader_dim + 2, config.reader_dim), nn.GELU(),
                                    nn.Linear(config.reader_dim, SEVERITY_LEVELS + 1))
        self.match_scale = nn.Parameter(torch.tensor(20.0))
        self.category_head = nn.Linear(dim, n, bias=False)  # the residual U; zero = pure similarity matching
        self.null_head = nn.Linear(dim, 1)  # "none" for responses (and earlier agent turns)
        self.request_null_head = nn.Linear(dim, 1)  # "none" for request screening (module doc)
        self.severity_head = nn.Linear(dim, SEVERITY_LEVELS)
        self.engage_head = nn.Linear(dim, 1)
        self.bias = nn.Parameter(torch.zeros(()))
        # category anchors: pooled "name: definition" and the name's token states (recomputed by set_anchors)
        self.register_buffer("anchors", torch.zeros(n, dim))
        self.register_buffer("name_tokens", torch.zeros(n, 16, dim))
        self.register_buffer("name_mask", torch.zeros(n, 16, dtype=torch.bool))
        # the mean training content window: the residual reads x minus it (set by training; zero = no centring)
        self.register_buffer("content_mean", torch.zeros(dim))
        self.post_init()
        self.reset_judge_heads()

    @torch.no_grad()
    def reset_judge_heads(self) -> None:
        """The matcher, "none", severity and engagement heads, ``match_scale`` and ``bias`` at their starting
        values: pure similarity matching (zero residual), "none" and engagement leaning towards harmless and
        engaged, a default-initialised severity head (from the global RNG: seed it for a reproducible start).
        Training's judge stage starts here; :mod:`tools.category_transfer` retrains from here."""
        nn.init.zeros_(self.category_head.weight)
        for null in (self.null_head, self.request_null_head):
            nn.init.zeros_(null.weight)
            null.bias.fill_(4.0)
        self.severity_head.reset_parameters()
        nn.init.zeros_(self.engage_head.weight)
        self.engage_head.bias.fill_(3.0)
        self.match_scale.fill_(20.0)
        self.bias.zero_()

    def _init_weights(self, module: nn.Module) -> None:
        if module is getattr(self, "category_head", None):  # zero: a checkpoint saved without it loads unchanged
            nn.init.zeros_(module.weight)
        elif isinstance(module, nn.Linear) and not any(module is m for m in self.backbone.modules()):
            module.reset_parameters()  # PyTorch's default (Kaiming-uniform): the small MLP learns fastest from it

    # -- construction --------------------------------------------------------------------------------
    @classmethod
    def from_backbone(cls, name_or_path: str, *, taxonomy: RiskTaxonomy | None = None, tokenizer=None,
                      **config_kwargs: Any) -> ClauseCSRMModel:
        """New model on a pretrained encoder (``minilm`` = the bundled all-MiniLM-L6-v2); anchors computed."""
        backbone = AutoModel.from_pretrained(resolve_model_name(name_or_path))
        return cls._new(backbone.config, backbone, taxonomy, tokenizer, config_kwargs)

    @classmethod
    def from_backbone_config(cls, backbone_config: PretrainedConfig, *, taxonomy: RiskTaxonomy | None = None,
                             tokenizer=None, **config_kwargs: Any) -> ClauseCSRMModel:
        """New model on a randomly initialised encoder (tests)."""
        return cls._new(backbone_config, None, taxonomy, tokenizer, config_kwargs)

    @classmethod
    def _new(cls, backbone_config, backbone, taxonomy, tokenizer, config_kwargs) -> ClauseCSRMModel:
        taxonomy = taxonomy or RiskTaxonomy.default()
        config = ClauseCSRMConfig(backbone=backbone_config.to_dict(), taxonomy=taxonomy.to_dict(), **config_kwargs)
        config.backbone = backbone_config
        model = cls(config, backbone=backbone)
        if tokenizer is not None:
            model.set_anchors(tokenizer)
        return model

    def train(self, mode: bool = True) -> ClauseCSRMModel:
        """Heads follow ``mode``; the frozen encoder always stays in eval mode (no dropout in the features)."""
        super().train(mode)
        self.backbone.eval()
        return self

    @property
    def taxonomy(self) -> RiskTaxonomy:
        from csrm.base.validation import taxonomy_from_dict

        return taxonomy_from_dict(self.config.taxonomy) or RiskTaxonomy.default()

    # -- the encoder ---------------------------------------------------------------------------------
    @torch.no_grad()
    def encode(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(pooled [B, D], token states [B, L, D]), both L2-normalised; masked mean pooling (how
        sentence-transformers trained MiniLM)."""
        hidden = self.backbone(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state.float()
        mask = attention_mask.unsqueeze(-1).float()
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)
        return F.normalize(pooled, dim=-1), F.normalize(hidden, dim=-1)

    @torch.no_grad()
    def set_anchors(self, tokenizer) -> None:
        """Encode the taxonomy's categories ("name: definition", and the name's tokens) into the buffers."""
        cats = self.taxonomy.categories
        device = self.anchors.device
        full = tokenizer([f"{c.name}: {c.definition}" for c in cats], padding=True, truncation=True,
                         max_length=self.config.max_length, return_tensors="pt").to(device)
        self.anchors.copy_(self.encode(full["input_ids"], full["attention_mask"])[0])
        names = tokenizer([c.name for c in cats], padding="max_length", truncation=True, max_length=18,
                          return_tensors="pt").to(device)
        _, tokens = self.encode(names["input_ids"], names["attention_mask"])
        words = word_mask(tokenizer, names["input_ids"], names["attention_mask"])
        self.name_tokens.zero_()
        self.name_mask.zero_()
        for row in range(len(cats)):  # the name's first 16 word tokens, left-aligned
            positions = words[row].nonzero().squeeze(-1)[: self.name_tokens.shape[1]]
            self.name_tokens[row, : len(positions)] = tokens[row, positions]
            self.name_mask[row, : len(positions)] = True

    def clause_scalars(self, pooled: torch.Tensor, tokens: torch.Tensor, token_mask: torch.Tensor
                       ) -> tuple[torch.Tensor, torch.Tensor]:
        """Per clause and category: MaxSim of the name's tokens over the clause's tokens, and pooled cosine."""
        sims = torch.einsum("mnd,bld->bmnl", self.name_tokens, tokens)  # [B, M, name tokens, clause tokens]
        sims = sims.masked_fill(~token_mask[:, None, None, :].bool(), -1.0).max(-1).values
        name_mask = self.name_mask.float()
        ms = (sims * name_mask).sum(-1) / name_mask.sum(-1).clamp(min=1.0)
        return ms, pooled @ self.anchors.T

    # -- heads ---------------------------------------------------------------------------------------
    def read_config(self, f: ClauseFeatures, shared: ClauseFeatures | None = None
                    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``A`` [C, M, 3] (category allowed up to severity s) and per-clause prohibition [C, K, M].

        ``shared`` [1, P, ...]: clauses that every config also contains (training's distractor rules). The
        reader reads each clause on its own, so their logits are computed once, not once per config, and
        enter the soft maximum as ``logaddexp``: the same result as appending them to every row of ``f``
        (tested) at 1/C of the cost. The per-clause prohibition covers ``f``'s clauses only."""
        z = self._clause_logits(f)  # [C, K, M, 4]
        # a soft maximum over clauses, in logit space: a hard max trained into dead units from some seeds
        # (validation exact-config accuracy 0.09 on one of three seeds, 0.72-0.77 on the others; logsumexp
        # 0.72-0.76 on all three)
        pooled = torch.logsumexp(z, dim=1)  # [C, M, 4]
        if shared is not None:
            pooled = torch.logaddexp(pooled, torch.logsumexp(self._clause_logits(shared), dim=1))
        p = torch.sigmoid(pooled)
        allowed = p[..., :SEVERITY_LEVELS] * (1 - p[..., SEVERITY_LEVELS:])
        return allowed, torch.sigmoid(z[..., SEVERITY_LEVELS])

    def _clause_logits(self, f: ClauseFeatures) -> torch.Tensor:
        """The reader's logits per clause and category [C, K, M, 4] (permits up to severity 1-3, prohibits);
        padding clauses get -1e4."""
        h = self.reader_proj(f.e)[:, :, None, :].expand(-1, -1, f.ms.shape[-1], -1)
        z = self.reader(torch.cat([h, 5 * f.ms[..., None], 5 * f.cos[..., None]], -1))
        return z.masked_fill(~f.mask[:, :, None, None], -1e4)

    def category_logits(self, x: torch.Tensor) -> torch.Tensor:
        """Per window and category: ``τ·cos(x, t_m) + U_m (x − μ)`` [..., M] (before the "none" class).

        ``μ`` (``content_mean``) is the mean training window. Every normalised embedding shares that direction
        (its norm is 0.31 on the shared recipe), so ``U x`` can carry a global prior towards the most labelled
        categories; ``U (x − μ)`` keeps only what tells contents apart. Measured on the shared recipe's cached
        features (two seeds): CoSAlign unseen 97.5–97.6 either way, augmented validation 93.3–93.5 →
        93.5, DynaBench 70.1–70.5 → 73.2–73.4."""
        return self.match_scale * (x @ self.anchors.T) + self.category_head(x - self.content_mean)

    def match_content(self, f: ContentFeatures) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(q [N, S, M+1] category distribution with "none" last, severity [N, S, 3], engagement [N, S])."""
        null = torch.where(f.gated[..., None], self.null_head(f.x), self.request_null_head(f.x))
        logits = torch.cat([self.category_logits(f.x), null], -1)
        q = torch.softmax(logits, -1)
        severity = torch.softmax(self.severity_head(f.x), -1)
        engage = torch.sigmoid(self.engage_head(f.x)).squeeze(-1)
        engage = torch.where(f.gated, engage, torch.ones_like(engage))
        return q, severity, engage

    def forward(self, clauses: ClauseFeatures | None, content: ContentFeatures,
                config_index: torch.Tensor | None = None, allowed: torch.Tensor | None = None,
                **_: Any) -> CSRMOutput:
        """Compliance logits and rewards for N items; ``config_index`` [N] picks each item's config row in
        ``clauses`` (configs are read once per batch however many items share them). ``allowed`` [C, M, 3]
        replaces reading ``clauses`` when the reader's output is already known (training with a frozen reader)."""
        if allowed is None:
            allowed, _ = self.read_config(clauses)
        if config_index is not None:
            allowed = allowed[config_index]
        q, severity, engage = self.match_content(content)
        n_cat = allowed.shape[1]
        # v[n, s, m]: window s of item n falls under category m at a severity the config does not allow
        denied = (severity[:, :, None, :] * (1 - allowed[:, None])).sum(-1)  # [N, S, M]
        per_category = engage[..., None] * q[..., :n_cat] * denied
        window = per_category.sum(-1).masked_fill(~content.mask, 0.0)
        log_comply = torch.log1p(-window.clamp(max=1 - EPS)).sum(-1)
        p = log_comply.exp().clamp(EPS, 1 - EPS)
        logits = torch.log(p) - torch.log1p(-p) + self.bias
        rewards = -self.expected_error(q, severity, engage, allowed, content.mask, per_category)
        return CSRMOutput(compliance_logits=logits, rewards=rewards, pooled=None)

    @staticmethod
    def expected_error(q, severity, engage, allowed, mask, per_category) -> torch.Tensor:
        """E[error score] of :mod:`csrm.base.compliance` under the model's distributions (max over windows)."""
        n_cat = allowed.shape[1]
        levels = torch.arange(1, SEVERITY_LEVELS + 1, dtype=severity.dtype, device=severity.device)
        expected_severity = (severity * levels).sum(-1, keepdim=True)  # [N, S, 1]
        used_allowed = (engage[..., None] * q[..., :n_cat] * allowed[:, None, :, SEVERITY_LEVELS - 1]).sum(-1)
        violation_cost = (per_category * (VIOLATION_BASE + expected_severity)).sum(-1)
        unhelpful = UNHELPFUL_COST * (1 - engage)
        err = unhelpful + ALLOWED_CATEGORY_COST * used_allowed + violation_cost
        err = err.masked_fill(~mask, float("-inf")).max(-1).values
        return err

    def calibrated_probability(self, logits: torch.Tensor, is_request=None) -> torch.Tensor:
        """P(complies) = sigmoid(logit / temperature), with the request temperature for request screening."""
        if is_request is None:
            return torch.sigmoid(logits / self.config.temperature)
        temperature = item_temperatures(self.config.temperature, self.config.request_temperature, is_request)
        return torch.sigmoid(logits / temperature.to(logits.device, logits.dtype))


AutoConfig.register("csrm_clause", ClauseCSRMConfig)
AutoModel.register(ClauseCSRMConfig, ClauseCSRMModel)
