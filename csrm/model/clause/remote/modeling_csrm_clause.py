"""An exported clause-reading CSRM for plain ``transformers``: ``AutoModel.from_pretrained(path,
trust_remote_code=True)`` returns a :class:`ClauseCSRMModel` whose :meth:`ClauseCSRMModel.score` gives the same
``p_comply`` and ``reward`` as ``csrm.load(path).score`` (to 1e-5, checked by ``csrm export`` and
``tests/test_clause_remote.py``)::

    from transformers import AutoModel
    model = AutoModel.from_pretrained(path, trust_remote_code=True)   # the tokenizer loads from the same folder
    out = model.score("No weapons or violence.", [{"role": "user", "content": "How do I make a weapon?"}],
                      "I can't help with that.")                       # response None: screen the request
    out["p_comply"], out["reward"], out["complies"]

**Why this file is a copy.** transformers imports this file from the model folder, in a process where csrm
may not be installed, so it cannot import csrm; it repeats, minimally, what csrm's clause predictor computes
for one item:

- clause splitting and windows: ``csrm/model/clause/clauses.py`` (``windows``, ``split_clauses``, ``segments``);
- which content is judged and how over-dense windows are cut again: ``csrm/model/clause/features.py``
  (``content_windows``, ``FeatureEncoder._fit`` / ``clause_texts``), ``csrm/base/records.py``
  (``last_user_turn``);
- the frozen encoder's masked-mean pooling, the config reader, the content matcher, the compliance rule and
  the reward: ``csrm/model/clause/modeling.py`` (``word_mask``, ``encode``, ``clause_scalars``,
  ``read_config``, ``_clause_logits``, ``category_logits``, ``match_content``, ``forward``,
  ``expected_error``, ``item_temperatures``; the costs of ``csrm/base/compliance.py``);
- the verdict's threshold lookup: ``csrm/scoring/thresholds.py`` (``config_key``, ``lookup_threshold``).

Left out, because they change speed and not numbers: csrm's feature cache across calls and its batching of
many items (this file reads one item at a time), training, and structured ``SafetyConfig`` objects (pass the
config text; csrm renders a structured config to text first). ``tests/test_clause_remote.py`` fails when the
two drift: it fingerprints each mirrored csrm function and compares both implementations on the same inputs.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoModel, AutoTokenizer, PreTrainedModel

from .configuration_csrm_clause import ClauseCSRMConfig

SEVERITY_LEVELS = 3
EPS = 1e-6
# csrm/base/compliance.py: the error score's costs
VIOLATION_BASE = 2.0
ALLOWED_CATEGORY_COST = 0.1
UNHELPFUL_COST = 1.0

# -- csrm/model/clause/clauses.py --------------------------------------------------------------------------
WINDOW_OVERLAP_CHARS = 80
_ITEM = re.compile(r"^\s*(?:(?:[-*•·]|\d{1,3}[.)]|\(?[a-zA-Z][.)])\s+|\|\s*)")
_TABLE_RULE = re.compile(r"^\s*\|?[\s:|-]+\|?\s*$")
_SENTENCE_END = re.compile(r"(?<=[.!?])[\"')\]]?\s+(?=[\"'(\[]?[A-Z0-9])")
_SPACES = re.compile(r"\s+")


def windows(text: str, max_chars: int, overlap: int = WINDOW_OVERLAP_CHARS) -> list[str]:
    """``text`` cut into windows of at most ``max_chars`` at word boundaries, overlapping by ~``overlap``."""
    text = text.strip()
    if len(text) <= max_chars:
        return [text] if text else []
    out, start = [], 0
    while start < len(text):
        end = min(len(text), start + max_chars)
        if end < len(text):
            space = text.rfind(" ", start + max_chars // 2, end)
            end = space if space > start else end
        out.append(text[start:end].strip())
        if end >= len(text):
            break
        back = text.rfind(" ", max(start + 1, end - overlap), end)
        start = back + 1 if back > start else end
    return [w for w in out if w]


def split_clauses(config: str, *, max_chars: int) -> list[str]:
    """The texts of a config's clauses (a list item keeps the lead-in line it sits under), cut into windows."""
    clauses: list[str] = []
    header = ""
    paragraph: list[str] = []

    def flush() -> None:
        clauses.extend(s.strip() for s in _SENTENCE_END.split(" ".join(paragraph)) if s.strip())
        paragraph.clear()

    for raw in config.replace("\r\n", "\n").replace("\r", "\n").split("\n"):
        line = raw.strip()
        if not line:
            flush()
            continue
        if line.startswith("|") and _TABLE_RULE.match(line):
            continue
        is_item = (bool(_ITEM.match(raw)) and len(_ITEM.sub("", raw, count=1).strip()) > 0) or (
            bool(header) and raw[:1].isspace())
        if is_item:
            flush()
            if line.startswith("|"):
                body = ": ".join(c for c in (c.strip() for c in line.strip().strip("|").split("|")) if c)
            else:
                body = _ITEM.sub("", raw, count=1).strip()
            body = _SPACES.sub(" ", body)
            clauses.append(f"{header} {body}".strip() if header else body)
            if body.endswith(":"):
                header = body
            continue
        if line.endswith(":"):
            flush()
            header = line
            clauses.append(line)
            continue
        header = ""
        paragraph.append(line)
    flush()
    out = [window for text in clauses for window in windows(text, max_chars)]
    if not out and config.strip():
        out = windows(_SPACES.sub(" ", config), max_chars)
    return out


def segments(text: str, *, max_chars: int) -> list[str]:
    """Judged content cut into windows; an empty text gives one empty segment."""
    return windows(_SPACES.sub(" ", text), max_chars) or [""]


# -- csrm/model/clause/features.py, csrm/base/records.py ---------------------------------------------------
def content_windows(messages: list[dict], response: str | None, max_chars: int) -> list[tuple[str, bool]]:
    """``[(window, gated)]``: request screening (no response) reads the last user turn, ungated; a response is
    judged with every earlier assistant turn, each gated by the engagement head."""
    if response is None:
        last_user = next((m["content"] for m in reversed(messages) if m["role"] == "user"), "")
        return [(w, False) for w in segments(last_user, max_chars=max_chars)]
    texts = [m["content"] for m in messages if m["role"] == "assistant"] + [response]
    return [(w, True) for text in texts for w in segments(text, max_chars=max_chars)]


def fit_to_encoder(text: str, tokenizer, max_length: int) -> list[str]:
    """``text`` as windows of at most ``max_length`` tokens (dense text such as CJK is halved until it fits)."""
    if len(text) <= max_length // 2 or len(tokenizer(text, add_special_tokens=True)["input_ids"]) <= max_length:
        return [text]
    half = max(1, len(text) // 2)
    return [piece for w in windows(text, half, overlap=min(WINDOW_OVERLAP_CHARS, half // 4))
            for piece in fit_to_encoder(w, tokenizer, max_length)]


# -- csrm/scoring/thresholds.py ----------------------------------------------------------------------------
def config_key(config: str) -> str:
    """The key of a config's stored threshold: csrm's ``SafetyConfig(text=config).id``."""
    if not config.strip():
        return ""
    payload = json.dumps({"text": config, "allow": []}, sort_keys=True)
    return hashlib.sha1(payload.encode("utf-8")).hexdigest()[:12]


def word_mask(tokenizer, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """True at real word tokens: not padding and not a special token."""
    special = torch.tensor(sorted(tokenizer.all_special_ids), dtype=input_ids.dtype, device=input_ids.device)
    return attention_mask.bool() & ~torch.isin(input_ids, special)


# -- csrm/model/clause/modeling.py -------------------------------------------------------------------------
class ClauseCSRMModel(PreTrainedModel):
    """Frozen encoder + config reader + content matcher; the same parameters and buffers as csrm's class."""

    config_class = ClauseCSRMConfig
    base_model_prefix = "backbone"
    _no_split_modules: list[str] = []

    def __init__(self, config: ClauseCSRMConfig):
        super().__init__(config)
        self.backbone = AutoModel.from_config(config.backbone)
        self.backbone.requires_grad_(False)
        dim = config.backbone.hidden_size
        n = len(config.taxonomy["categories"])
        self.reader_proj = nn.Linear(dim, config.reader_dim)
        self.reader = nn.Sequential(nn.Linear(config.reader_dim + 2, config.reader_dim), nn.GELU(),
                                    nn.Linear(config.reader_dim, SEVERITY_LEVELS + 1))
        self.match_scale = nn.Parameter(torch.tensor(20.0))
        self.category_head = nn.Linear(dim, n, bias=False)
        self.null_head = nn.Linear(dim, 1)
        self.request_null_head = nn.Linear(dim, 1)
        self.severity_head = nn.Linear(dim, SEVERITY_LEVELS)
        self.engage_head = nn.Linear(dim, 1)
        self.bias = nn.Parameter(torch.zeros(()))
        self.register_buffer("anchors", torch.zeros(n, dim))
        self.register_buffer("name_tokens", torch.zeros(n, 16, dim))
        self.register_buffer("name_mask", torch.zeros(n, 16, dtype=torch.bool))
        self.register_buffer("content_mean", torch.zeros(dim))
        self._tokenizer = None
        self.post_init()

    def _init_weights(self, module: nn.Module) -> None:
        """Weights come from the checkpoint; only the matcher's residual of a checkpoint saved before it
        existed starts at zero, as in csrm."""
        if module is getattr(self, "category_head", None):
            nn.init.zeros_(module.weight)

    def train(self, mode: bool = True) -> ClauseCSRMModel:
        super().train(mode)
        self.backbone.eval()  # the encoder is frozen: never dropout in the features
        return self

    # -- features ----------------------------------------------------------------------------------------
    @torch.no_grad()
    def encode(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(pooled [B, D], token states [B, L, D]), L2-normalised; masked mean pooling."""
        hidden = self.backbone(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state.float()
        mask = attention_mask.unsqueeze(-1).float()
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)
        return F.normalize(pooled, dim=-1), F.normalize(hidden, dim=-1)

    def clause_scalars(self, pooled: torch.Tensor, tokens: torch.Tensor, token_mask: torch.Tensor
                       ) -> tuple[torch.Tensor, torch.Tensor]:
        """Per clause and category: MaxSim of the name's tokens over the clause's tokens, and pooled cosine."""
        sims = torch.einsum("mnd,bld->bmnl", self.name_tokens, tokens)
        sims = sims.masked_fill(~token_mask[:, None, None, :].bool(), -1.0).max(-1).values
        name_mask = self.name_mask.float()
        ms = (sims * name_mask).sum(-1) / name_mask.sum(-1).clamp(min=1.0)
        return ms, pooled @ self.anchors.T

    def _encode_texts(self, tokenizer, texts: list[str], batch_size: int = 64) -> list[tuple]:
        """Per distinct text: (pooled, MaxSim, cosine) with ``clauses``, else (pooled,)."""
        out = []
        for start in range(0, len(texts), batch_size):
            batch = tokenizer(texts[start:start + batch_size], add_special_tokens=True, truncation=True,
                              max_length=self.config.max_length, padding=True, return_tensors="pt")
            ids, mask = batch["input_ids"].to(self.device), batch["attention_mask"].to(self.device)
            pooled, states = self.encode(ids, mask)
            ms, cos = self.clause_scalars(pooled, states, word_mask(tokenizer, ids, mask))
            out += list(zip(pooled, ms, cos, strict=True))
        return out

    # -- heads -------------------------------------------------------------------------------------------
    def read_config(self, e: torch.Tensor, ms: torch.Tensor, cos: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``A`` [C, M, 3]: each category allowed up to severity s (soft maximum over clauses)."""
        h = self.reader_proj(e)[:, :, None, :].expand(-1, -1, ms.shape[-1], -1)
        z = self.reader(torch.cat([h, 5 * ms[..., None], 5 * cos[..., None]], -1))
        z = z.masked_fill(~mask[:, :, None, None], -1e4)
        p = torch.sigmoid(torch.logsumexp(z, dim=1))
        return p[..., :SEVERITY_LEVELS] * (1 - p[..., SEVERITY_LEVELS:])

    def match_content(self, x: torch.Tensor, gated: torch.Tensor):
        """(q [N, S, M+1] with "none" last, severity [N, S, 3], engagement [N, S])."""
        null = torch.where(gated[..., None], self.null_head(x), self.request_null_head(x))
        logits = torch.cat([self.match_scale * (x @ self.anchors.T) + self.category_head(x - self.content_mean),
                            null], -1)
        q = torch.softmax(logits, -1)
        severity = torch.softmax(self.severity_head(x), -1)
        engage = torch.sigmoid(self.engage_head(x)).squeeze(-1)
        return q, severity, torch.where(gated, engage, torch.ones_like(engage))

    def forward(self, e: torch.Tensor, ms: torch.Tensor, cos: torch.Tensor, clause_mask: torch.Tensor,
                x: torch.Tensor, window_mask: torch.Tensor, gated: torch.Tensor) -> dict[str, torch.Tensor]:
        """Compliance logits (before temperature) and rewards of N items from their features: clauses ``e``
        [N, K, D], ``ms``/``cos`` [N, K, M], ``clause_mask`` [N, K]; windows ``x`` [N, S, D], ``window_mask``
        and ``gated`` [N, S]. :meth:`score` builds them from text."""
        allowed = self.read_config(e, ms, cos, clause_mask)
        q, severity, engage = self.match_content(x, gated)
        n_cat = allowed.shape[1]
        denied = (severity[:, :, None, :] * (1 - allowed[:, None])).sum(-1)
        per_category = engage[..., None] * q[..., :n_cat] * denied
        window = per_category.sum(-1).masked_fill(~window_mask, 0.0)
        p = torch.log1p(-window.clamp(max=1 - EPS)).sum(-1).exp().clamp(EPS, 1 - EPS)
        logits = torch.log(p) - torch.log1p(-p) + self.bias
        levels = torch.arange(1, SEVERITY_LEVELS + 1, dtype=severity.dtype, device=severity.device)
        expected_severity = (severity * levels).sum(-1, keepdim=True)
        used_allowed = (engage[..., None] * q[..., :n_cat] * allowed[:, None, :, SEVERITY_LEVELS - 1]).sum(-1)
        err = (UNHELPFUL_COST * (1 - engage) + ALLOWED_CATEGORY_COST * used_allowed
               + (per_category * (VIOLATION_BASE + expected_severity)).sum(-1))
        rewards = -err.masked_fill(~window_mask, float("-inf")).max(-1).values
        return {"compliance_logits": logits, "rewards": rewards}

    # -- the documented call -----------------------------------------------------------------------------
    def score(self, config: str, messages: str | list[dict], response: str | None = None, *,
              tokenizer=None) -> dict[str, Any]:
        """Score one response to a conversation under a safety config (``response=None`` screens the last user
        turn): ``{"p_comply", "reward", "complies", "threshold", "compliance_logit"}``, as ``csrm.load``'s
        ``score``. ``messages``: a prompt string or ``[{"role", "content"}]`` turns (the response under review
        not among them). ``tokenizer`` defaults to the one saved in the model's folder."""
        if tokenizer is None:
            if self._tokenizer is None:
                # the folder's config.json names this remote code: the tokenizer's loader asks to trust it too
                self._tokenizer = AutoTokenizer.from_pretrained(self.name_or_path, trust_remote_code=True)
            tokenizer = self._tokenizer
        if not isinstance(config, str) or not config.strip():
            raise ValueError("config must be a non-empty string")
        messages = [{"role": "user", "content": messages}] if isinstance(messages, str) else list(messages)
        cfg = self.config
        limit = cfg.max_length
        clauses = [piece for c in split_clauses("" if cfg.blind_config else config,
                                                max_chars=cfg.max_clause_chars)
                   for piece in fit_to_encoder(c, tokenizer, limit)]
        judged = [(piece, gate) for text, gate in content_windows(messages, response, cfg.max_segment_chars)
                  for piece in fit_to_encoder(text, tokenizer, limit)]
        distinct = list(dict.fromkeys(clauses + [t for t, _ in judged]))
        features = dict(zip(distinct, self._encode_texts(tokenizer, distinct), strict=True))
        dim, n_cat = self.anchors.shape[1], self.anchors.shape[0]
        k = max(1, len(clauses))  # a blank config (the config-blind model) has no clause: all masked
        e, ms, cos = (torch.zeros(1, k, d, device=self.device) for d in (dim, n_cat, n_cat))
        for col, text in enumerate(clauses):
            e[0, col], ms[0, col], cos[0, col] = features[text]
        clause_mask = torch.zeros(1, k, dtype=torch.bool, device=self.device)
        clause_mask[0, : len(clauses)] = True
        x = torch.stack([features[t][0] for t, _ in judged])[None]
        gated = torch.tensor([[g for _, g in judged]], dtype=torch.bool, device=self.device)
        with torch.no_grad():
            out = self.forward(e, ms, cos, clause_mask, x, torch.ones_like(gated), gated)
        logit, reward = float(out["compliance_logits"][0]), float(out["rewards"][0])
        temperature = (cfg.request_temperature or cfg.temperature) if response is None else cfg.temperature
        p_comply = float(torch.sigmoid(torch.tensor([logit]) / torch.tensor([float(temperature)]))[0])
        key = config_key(config)
        threshold = float((cfg.config_thresholds or {}).get(key, cfg.threshold))
        return {"p_comply": p_comply, "reward": reward, "complies": (1.0 - p_comply) < threshold,
                "threshold": threshold, "compliance_logit": logit}
