"""``csrm export MODEL OUTPUT_DIR``: a saved CSRM as a standard ``transformers`` reward model (no csrm import needed).

**Cross-encoder CSRM** (``model_type: csrm``) -> a folder that ``AutoModelForSequenceClassification`` loads
with ``num_labels=1`` (what TRL's ``reward_funcs="<path>"``, ``pipeline("text-classification")`` and other
reward-model consumers do), whose single logit is the CSRM's reward:

- **decoder backbones** (pooling ``last``: Llama, Qwen, SmolLM, GPT-2, ...): the backbone's own
  ``*ForSequenceClassification`` class with the reward head as its ``score`` layer. It pools the rightmost
  non-padding token, the EOS the CSRM pools, so the tokenizer's pad token must differ from EOS (another
  special token is chosen when the CSRM's reuses EOS). Those ``score`` layers have no bias: the logit is
  ``reward - reward_bias`` (``config.json``'s ``csrm.reward_bias``): rankings, GRPO/RLOO advantages and
  preference probabilities are unchanged; add it back for the CSRM's exact number.
- **BERT encoders** (the default MiniLM): ``BertForSequenceClassification``. Its head reads the first token
  through a ``tanh`` pooler, not the CSRM's masked mean, so the export appends one parameter-only layer that
  averages exactly: queries and keys are 0 (uniform attention over the real tokens = the masked mean, bias
  included), its value carries ``reward_head · h``, and it writes the reward into the first token's state
  beside a constant that fixes that layer's LayerNorm scale; the pooler and classifier read it back through
  ``tanh`` in its linear range (argument below 1e-3). In float32 the logit equals the CSRM's reward to
  ~1e-5 (fp16 would overflow the constants: the export is float32). ``cls`` pooling needs only the pooler step.
  Other encoder families are refused (``--format csrm`` copies the CSRM folder with a card instead).

The compliance head is kept beside it in ``csrm_compliance_head.safetensors`` (``weight``, ``bias``) and
``config.json`` documents how to read it (``csrm.base.compliance``): P(complies) = sigmoid((weight · pooled + bias)
/ temperature), pooled = the base model's last-token state (decoders) or the masked mean of
``hidden_states[-2]`` (BERT exports: the layer before the averaging layer), and the verdict is "violates" when 1 - P(complies) >= the
threshold (per config where fitted). ``id2label`` is ``{0: "reward"}``.

**Inputs.** The tokenizer gets a chat template that lays out messages as the CSRM's formatter does: the
first system message is the safety config; the last assistant message is the response under review (none:
request screening); the turns between are the conversation; the template writes the special tokens itself
(BERT's ``[CLS]``/``[SEP]``, a decoder's BOS/EOS), so tokenize its text with ``add_special_tokens=False`` (as
TRL does). Inputs longer than ``max_length`` are truncated by the CSRM's own rule only under ``csrm.load``.

**Clause-reading CSRM** (``model_type: csrm_clause``): it reads a config clause by clause and the content
window by window (several encoder passes per item), so no single-forward architecture reproduces it. Its
``--format transformers`` export (the default for it, :mod:`csrm.scoring.clause_export`) is the model folder
plus remote code named by ``auto_map``: ``AutoModel.from_pretrained(path, trust_remote_code=True)`` loads it
without csrm and ``model.score(config, messages, response)`` gives csrm's p_comply and reward (checked to 1e-5
at export). ``--format csrm`` copies the folder with a card, for ``csrm.load`` only.

**Rule judge** (``model_type: csrm_rule``): a second encoder narrows the (rule, window) pairs and an OR
combines the cross-encoder's pair logits, so it has no plain-``transformers`` form either; ``auto`` copies the
folder with a card (as ``--format csrm``) and ``--format transformers`` is refused, naming ``format``. So is the
**policy judge** (``model_type: csrm_policy``): a router over a category reader and a rule judge, one folder.

Every export checks itself: the standard model and ``csrm.load`` score the same probe items through the chat
template, and the export fails if the rewards differ by more than ``1e-3`` (the largest difference is
written to ``config.json`` and the card).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any, Literal, get_args

from csrm.base.errors import InputError
from csrm.base.io import atomic_path, check_output_dir
from csrm.model.registry import FAMILIES
from csrm.scoring.export_probes import PROBES

logger = logging.getLogger(__name__)

COMPLIANCE_FILE = "csrm_compliance_head.safetensors"
Format = Literal["auto", "transformers", "csrm"]
RULE_MODEL_TYPE = FAMILIES["rule"].model_type  # the rule judge: exported as its csrm folder (auto) only
POLICY_MODEL_TYPE = FAMILIES["policy"].model_type  # the policy judge: likewise
FOLDER_ONLY = {RULE_MODEL_TYPE: "the rule judge has no plain-transformers form (a second encoder narrows the (rule, "
                                "window) pairs and an OR combines them)",
               POLICY_MODEL_TYPE: "the policy judge has no plain-transformers form (a router over two readers)"}
FORMATS: tuple[str, ...] = get_args(Format)
TOLERANCE = 1e-3
# the averaging layer's constants (module doc): ALPHA scales the written values far above the residual stream,
# C makes the LayerNorm scale independent of the reward, EPS keeps tanh linear
ALPHA, C_CONST, EPS = 1e6, 1e5, 1e-5



def read_model_type(model_dir: Path) -> str:
    from csrm.base.validation import check_model_dir

    check_model_dir(model_dir)
    return json.loads((model_dir / "config.json").read_text(encoding="utf-8")).get("model_type", "")


# -- chat templates ----------------------------------------------------------------------------------------
# a message's text: a string, or the text parts of a content list
_CONTENT_EXPR = ("(m['content'] if m['content'] is string else m['content'] | selectattr('type', 'equalto', "
                 "'text') | map(attribute='text') | join(''))")


def _jinja_str(text: str) -> str:
    return json.dumps(text)  # a valid Jinja string literal (double quotes, escapes)


def plain_chat_template(*, head: str, middle: str, tail: str) -> str:
    """A Jinja chat template rendering messages exactly as :class:`csrm.model.formatting.InputFormatter`'s ``plain``
    template joins its segments (``head``/``middle``/``tail``: the special-token strings around them). No
    whitespace control and no literal text between tags: every character comes from an expression."""
    from csrm.model.formatting import ROLE_NAMES, SCREENING_MARKER

    roles = "{" + ", ".join(f"{_jinja_str(k)}: {_jinja_str(v)}" for k, v in ROLE_NAMES.items()) + "}"
    lit = _jinja_str
    return (
        "{% set roles = " + roles + " %}"
        "{% set ns = namespace(config='', found=false, last=-1, skipped=false) %}"
        "{% if messages and messages[-1]['role'] == 'assistant' %}{% set ns.last = messages | length - 1 %}"
        "{% endif %}"
        "{% for m in messages %}{% if m['role'] == 'system' and not ns.found %}{% set ns.found = true %}"
        "{% set ns.config = " + _CONTENT_EXPR + " %}{% endif %}{% endfor %}"
        "{{ " + lit(head + "Safety configuration:\n") + " }}{{ ns.config }}"
        "{{ " + lit(middle + "\nConversation:\n") + " }}"
        "{% for m in messages %}"
        "{% if m['role'] == 'system' and not ns.skipped %}{% set ns.skipped = true %}"
        "{% elif loop.index0 != ns.last %}{{ roles[m['role']] }}{{ ': ' }}{{ " + _CONTENT_EXPR + " }}{{ "
        + lit("\n") + " }}{% endif %}"
        "{% endfor %}"
        "{{ " + lit("Response under review:\n") + " }}"
        "{% if ns.last >= 0 %}{{ " + _CONTENT_EXPR.replace("m[", "messages[ns.last][") + " }}"
        "{% else %}{{ " + lit(SCREENING_MARKER) + " }}{% endif %}"
        "{{ " + lit(tail) + " }}"
    )


def wrapped_chat_template(original: str, eos: str) -> str:
    """The backbone's own chat template (``template: chat`` decoders) with the CSRM's two additions: a
    request without a final assistant turn is judged as the screening marker, and EOS ends the text."""
    from csrm.model.formatting import SCREENING_MARKER

    marker = "{{'role': 'assistant', 'content': " + _jinja_str(SCREENING_MARKER) + "}}"
    prefix = ("{% if not messages or messages[-1]['role'] != 'assistant' %}"
              "{% set messages = messages + [" + marker[1:-1] + "] %}{% endif %}")
    return prefix + original + "{{ " + _jinja_str(eos) + " }}"


# -- building the standard model ---------------------------------------------------------------------------
def _tokens(tokenizer, ids: list[int]) -> str:
    return "".join(tokenizer.convert_ids_to_tokens(ids)) if ids else ""


def _distinct_pad(tokenizer) -> None:
    """Decoder exports pool the rightmost non-pad token (the EOS): the pad token must not be EOS."""
    if tokenizer.pad_token_id is not None and tokenizer.pad_token_id != tokenizer.eos_token_id:
        return
    candidates = [tokenizer.unk_token] + [t for t in tokenizer.all_special_tokens if "pad" in t.lower()]
    candidates += [t for t in tokenizer.get_vocab() if "pad" in t.lower() or "reserved" in t.lower()]
    for token in candidates:
        if token is not None and tokenizer.convert_tokens_to_ids(token) not in (None, tokenizer.eos_token_id,
                                                                              tokenizer.bos_token_id):
            tokenizer.pad_token = token
            return
    tokenizer.add_special_tokens({"pad_token": "<|csrm_pad|>"})  # never embedded: padded rows are masked


def _decoder_export(model, tokenizer):
    import torch
    from transformers import AutoModelForSequenceClassification

    config = model.backbone.config.__class__.from_dict(model.backbone.config.to_dict())
    config.num_labels = 1
    _distinct_pad(tokenizer)
    config.pad_token_id = tokenizer.pad_token_id
    try:
        seq = AutoModelForSequenceClassification.from_config(config)
    except ValueError as err:
        raise InputError(f"no sequence-classification class for backbone {config.model_type!r} ({err}); "
                         "use --format csrm and csrm.load") from None
    base = getattr(seq, seq.base_model_prefix)
    missing, unexpected = base.load_state_dict(model.backbone.state_dict(), strict=False)
    if unexpected or [k for k in missing if "rotary" not in k]:
        raise InputError(f"backbone weights do not fit {type(seq).__name__}: missing {missing[:3]}, unexpected "
                         f"{unexpected[:3]}")
    head = getattr(seq, "score", None) or getattr(seq, "classifier", None)
    if not isinstance(head, torch.nn.Linear):
        raise InputError(f"{type(seq).__name__} has no linear score head; use --format csrm and csrm.load")
    with torch.no_grad():
        head.weight.copy_(model.reward_head.weight.to(head.weight.dtype))
        bias = float(model.reward_head.bias.detach())
        if head.bias is not None:
            head.bias.fill_(bias)
            bias = 0.0
    return seq, {"pooled": f"the base model's (.{seq.base_model_prefix}) last_hidden_state at the rightmost "
                           "non-padding token (the EOS the template ends with)", "reward_bias": bias}


def _bert_export(model):
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    src = model.backbone.config
    config = BertConfig.from_dict(src.to_dict())
    mean = model.config.pooling == "mean"
    config.num_hidden_layers = src.num_hidden_layers + (1 if mean else 0)
    config.num_labels = 1
    seq = BertForSequenceClassification(config).float().eval()
    state = {k: v.float() for k, v in model.backbone.state_dict().items() if not k.startswith("pooler.")}
    missing, unexpected = seq.bert.load_state_dict(state, strict=False)
    extra = f"encoder.layer.{src.num_hidden_layers}."
    if unexpected or [k for k in missing if not k.startswith(("pooler.", extra))]:
        raise InputError(f"backbone weights do not fit BertForSequenceClassification: {missing[:3]} {unexpected[:3]}")
    w, b = model.reward_head.weight.detach().float()[0], float(model.reward_head.bias.detach())
    hidden = config.hidden_size
    with torch.no_grad():
        pooler, classifier = seq.bert.pooler.dense, seq.classifier
        pooler.weight.zero_()
        pooler.bias.zero_()
        classifier.weight.zero_()
        classifier.bias.zero_()
        classifier.weight[0, 0] = 1.0 / EPS
        if mean:
            layer = seq.bert.encoder.layer[src.num_hidden_layers]
            for p in layer.parameters():
                p.zero_()
            attn = layer.attention
            attn.self.value.weight[0] = w  # head 0, dim 0: reward_head . h_t; uniform attention averages it
            d = torch.zeros(hidden)
            d[0], d[1] = 1.0, -1.0
            e = torch.zeros(hidden)
            e[2], e[3] = 1.0, -1.0
            attn.output.dense.weight[:, 0] = ALPHA * d
            attn.output.dense.bias.copy_(ALPHA * (b * d + C_CONST * e))
            attn.output.LayerNorm.weight.fill_(1.0)
            layer.output.LayerNorm.weight.fill_(1.0)
            # after the LayerNorms, h[0] - h[1] = s * sqrt(2 * hidden) / C (to 1e-10 relative)
            pooler.weight[0] = EPS * C_CONST / (2 * hidden) ** 0.5 * d
        else:
            pooler.weight[0] = EPS * w
            pooler.bias[0] = EPS * b
    pooled = ("the masked mean of hidden_states[-2] (the backbone's last layer; the export's final layer only "
              "averages)" if mean else "the first token's state in hidden_states[-1]")
    return seq, {"pooled": pooled, "reward_bias": 0.0}


def build_standard_model(model, tokenizer) -> tuple[Any, dict[str, Any], str]:
    """(``*ForSequenceClassification``, how to read the compliance head, chat template) for a CSRMModel."""
    decoder = model.config.pooling == "last"
    if decoder:
        seq, info = _decoder_export(model, tokenizer)
    elif model.backbone.config.model_type == "bert":
        seq, info = _bert_export(model)
    else:
        raise InputError(f"--format transformers supports decoder backbones and BERT encoders; this CSRM's "
                         f"backbone is {model.backbone.config.model_type!r}: use --format csrm and csrm.load")
    formatter = model.make_formatter(tokenizer)
    if model.config.template == "chat":
        template = wrapped_chat_template(tokenizer.chat_template, tokenizer.eos_token)
    else:
        template = plain_chat_template(head=_tokens(tokenizer, formatter.head),
                                       middle=_tokens(tokenizer, formatter.middle),
                                       tail=_tokens(tokenizer, formatter.tail))
    return seq, info, template


# -- the export --------------------------------------------------------------------------------------------
def _csrm_section(model, info: dict[str, Any], max_diff: float | None) -> dict[str, Any]:
    cfg = model.config
    return {
        "exported_from": "csrm " + _version(),
        "label_index": {"0": "reward (higher = better: helpful and compliant best, severe violations worst)"},
        "reward_bias": info["reward_bias"],
        "reward": "logits[:, 0] + reward_bias = the CSRM reward",
        "compliance": {
            "file": COMPLIANCE_FILE,
            "pooled": info["pooled"],
            "p_comply": "sigmoid((weight . pooled + bias) / temperature)",
            "temperature": float(cfg.temperature),
            "threshold": float(cfg.threshold),
            "config_thresholds": dict(cfg.config_thresholds or {}),
            "verdict": "violates when 1 - p_comply >= the threshold of the config (per-config keys: "
                       "csrm.scoring.thresholds.config_key of the config text; else threshold)",
        },
        "input": {"template": cfg.template, "max_length": int(cfg.max_length),
                  "chat_template": "system = safety config; last assistant turn = the response under review; "
                                   "tokenize the rendered text with add_special_tokens=False"},
        "blind_config": bool(getattr(cfg, "blind_config", False)),
        "max_abs_reward_difference": max_diff,
    }


def _version() -> str:
    from csrm import __version__

    return __version__


def probe_difference(scorer, seq, tokenizer, reward_bias: float) -> float:
    """Largest |standard logit + reward_bias - csrm reward| over :data:`PROBES`, batched with right padding."""
    import torch

    from csrm.base.score_types import ScoreItem

    rows = [[{"role": "system", "content": c}, *m] + ([{"role": "assistant", "content": r}] if r else [])
            for c, m, r in PROBES]
    texts = [tokenizer.apply_chat_template(r, tokenize=False) for r in rows]
    inputs = tokenizer(texts, add_special_tokens=False, padding=True, padding_side="right", return_tensors="pt")
    inputs.pop("token_type_ids", None)
    with torch.inference_mode():
        logits = seq(**inputs).logits[:, 0].float() + reward_bias
    expected = [r.reward for r in scorer.score_items([ScoreItem(c, m, r) for c, m, r in PROBES])]
    return float((logits - torch.tensor(expected)).abs().max())


def export(model_dir: str | Path, out_dir: str | Path, *, fmt: str = "auto", report: str | Path | None = None,
           push_to_hub: str | None = None, private: bool = False, verify: bool = True,
           overwrite: bool = False) -> Path:
    """Write the export of ``model_dir`` to ``out_dir`` (atomically); returns ``out_dir``. See the module doc."""
    from csrm.scoring.model_card import write_card

    model_dir, out = Path(model_dir), Path(out_dir).expanduser().resolve()
    if fmt not in FORMATS:
        raise InputError(f"must be one of {list(FORMATS)}", field="format")
    model_type = read_model_type(model_dir)
    if push_to_hub is not None:
        check_hub_target(push_to_hub)
    check_output_dir(out_dir, "export", overwrite=overwrite, inputs={"model": model_dir, "report": report})
    if model_type in FOLDER_ONLY and fmt == "transformers":
        raise InputError(f"{FOLDER_ONLY[model_type]}: export it with format=csrm, for csrm.load", field="format")
    with atomic_path(out, is_dir=True, command="export") as partial:
        if fmt == "csrm" or model_type in FOLDER_ONLY:  # auto: the folder as is
            shutil.copytree(model_dir, partial, dirs_exist_ok=True)
            kind = model_type if model_type in ("csrm_clause", *FOLDER_ONLY) else "csrm"  # the card's wording
            write_card(partial, model_dir, kind=kind, report=report)
        elif model_type == "csrm_clause":
            from csrm.scoring.clause_export import export_clause

            export_clause(model_dir, partial, report=report, verify=verify)
        else:
            _export_transformers(model_dir, partial, report=report, verify=verify)
    if push_to_hub is not None:
        push(out, push_to_hub, private=private)
    return out


def _export_transformers(model_dir: Path, out: Path, *, report: str | Path | None, verify: bool) -> None:
    from safetensors.torch import save_file

    from csrm.scoring.model_card import write_card
    from csrm.scoring.scorer import Scorer

    scorer = Scorer.from_pretrained(model_dir, device="cpu")
    model, tokenizer = scorer.model, scorer.tokenizer
    if model.config.pooling in ("mean", "cls"):
        model.float()  # the BERT export is float32 (its averaging layer's constants overflow fp16)
    seq, info, template = build_standard_model(model, tokenizer)
    seq.eval()
    tokenizer.chat_template = template
    max_diff = probe_difference(scorer, seq, tokenizer, info["reward_bias"]) if verify else None
    if max_diff is not None and not max_diff <= TOLERANCE:
        raise InputError(f"the exported model's reward differs from csrm.load's by {max_diff:.3g} on probe "
                         f"items (tolerance {TOLERANCE}); use --format csrm", path=str(model_dir))
    seq.config.id2label, seq.config.label2id = {0: "reward"}, {"reward": 0}
    seq.config.csrm = _csrm_section(model, info, max_diff)
    seq.config._name_or_path = ""
    seq.save_pretrained(out)
    tokenizer.padding_side = "right"
    tokenizer.save_pretrained(out)
    head = model.compliance_head
    save_file({"weight": head.weight.detach().float().contiguous().clone(),
               "bias": head.bias.detach().float().contiguous().clone()}, str(out / COMPLIANCE_FILE))
    for name in ("train_config.yaml", "train_results.json"):
        if (model_dir / name).is_file():
            shutil.copy2(model_dir / name, out / name)
    write_card(out, model_dir, kind="transformers", report=report, architecture=type(seq).__name__,
               max_diff=max_diff, reward_bias=info["reward_bias"])


# -- hub ---------------------------------------------------------------------------------------------------
def check_hub_target(repo_id: str) -> None:
    """``owner/name`` and a hub that can be reached (checked before any work)."""
    parts = repo_id.split("/")
    if len(parts) != 2 or not all(parts) or any(c.isspace() for c in repo_id):
        raise InputError(f"expected a hub repository id 'owner/name', got {repo_id!r}", field="--push-to-hub")
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in {"1", "true", "yes"}:
        raise InputError("HF_HUB_OFFLINE is set: cannot push to the hub (unset it, or export without "
                         "--push-to-hub and upload the folder later)", field="--push-to-hub")


def push(folder: Path, repo_id: str, *, private: bool = False) -> str:
    from huggingface_hub import HfApi

    api = HfApi()
    api.create_repo(repo_id, private=private, exist_ok=True)
    info = api.upload_folder(folder_path=str(folder), repo_id=repo_id, commit_message="csrm export")
    return str(getattr(info, "commit_url", info))
