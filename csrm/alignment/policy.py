"""Policies for ``csrm align``: resolve and load any HF causal LM, sample from it, score completions.

**GGUF.** A GGUF policy (the alias ``smollm2-135m-instruct``, or ``gguf_file``) is converted once into a plain
checkpoint under the cache by :mod:`csrm.base.gguf` (:func:`resolve_policy`), which the model families share.

**Sampling** uses transformers ``generate`` with left padding, ``num_return_sequences = k`` and prompts
sorted by length.

**Log-probabilities** of completions are computed exactly the way ``trl.DPOTrainer`` tokenizes a
conversational pair: the prompt rendered with the generation prompt, the completion = the tokens after the
common prefix with the full rendered chat.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm
from transformers import (
    AutoModelForCausalLM,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from csrm.base.gguf import resolve_checkpoint
from csrm.base.io import atomic_path
from csrm.base.records import Message
from csrm.model.cross_encoder.modeling import DTYPES, load_tokenizer
from csrm.model.prefix_cache import cache_argument, output_cache

logger = logging.getLogger(__name__)


# A minimal chat template for tokenizers that have none (plain "System:/User:/Assistant:" turns).
FALLBACK_CHAT_TEMPLATE = (
    "{% for m in messages %}{{ m['role'] | capitalize }}: {{ m['content'] }}{{ eos_token }}\n{% endfor %}"
    "{% if add_generation_prompt %}Assistant:{% endif %}"
)


def resolve_policy(name_or_path: str, gguf_file: str = "") -> str:
    """A loadable checkpoint path or hub id for ``policy.name_or_path`` (:func:`csrm.base.gguf.resolve_checkpoint`)."""
    return resolve_checkpoint(name_or_path, gguf_file, field="policy.name_or_path")


# -- loading -------------------------------------------------------------------------------------------
def pick_device(device: str = "auto") -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def load_policy_tokenizer(path: str, *, chat_template: str = "", trust_remote_code: bool = False
                          ) -> PreTrainedTokenizerBase:
    """The policy's tokenizer with a pad token, left padding and a chat template (its own, given, or fallback)."""
    tokenizer = load_tokenizer(path, decoder=True, trust_remote_code=trust_remote_code)
    return prepare_tokenizer(tokenizer, chat_template=chat_template)


def prepare_tokenizer(tokenizer: PreTrainedTokenizerBase, *, chat_template: str = "") -> PreTrainedTokenizerBase:
    if tokenizer.eos_token is None:
        tokenizer.eos_token = tokenizer.sep_token or tokenizer.pad_token
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
    if chat_template:
        path = Path(chat_template)
        tokenizer.chat_template = path.read_text(encoding="utf-8") if path.is_file() else chat_template
    elif not getattr(tokenizer, "chat_template", None):
        tokenizer.chat_template = FALLBACK_CHAT_TEMPLATE
    return tokenizer


def load_policy(name_or_path: str, *, gguf_file: str = "", dtype: str = "float32", device: str = "auto",
                chat_template: str = "", trust_remote_code: bool = False
                ) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """(model in eval mode on ``device``, tokenizer) for a policy name/path (aliases and GGUF resolved)."""
    path = resolve_policy(name_or_path, gguf_file)
    tokenizer = load_policy_tokenizer(path, chat_template=chat_template, trust_remote_code=trust_remote_code)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=DTYPES[dtype], trust_remote_code=trust_remote_code)
    model.to(pick_device(device)).eval()
    if model.generation_config is not None:
        model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer


def save_policy(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, dest: str | Path) -> Path:
    """Save a policy (merging LoRA adapters first, if any) atomically."""
    if hasattr(model, "merge_and_unload"):
        model = model.merge_and_unload()
    with atomic_path(dest, is_dir=True) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
    return Path(dest)


# -- sampling ------------------------------------------------------------------------------------------
@dataclass
class SamplingParams:
    """How to sample: ``n`` responses per prompt."""

    n: int = 1
    max_new_tokens: int = 128
    temperature: float = 1.0
    top_p: float = 1.0
    do_sample: bool = True
    batch_size: int = 16
    seed: int = 0


def render_prompts(tokenizer: PreTrainedTokenizerBase, conversations: Sequence[list[Message]]) -> list[list[int]]:
    """Token ids of each conversation rendered with the chat template and the generation prompt."""
    out = []
    for messages in conversations:
        ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_dict=False)
        out.append(list(ids["input_ids"] if isinstance(ids, dict) or hasattr(ids, "keys") else ids))
    return out


@torch.no_grad()
def generate(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, conversations: Sequence[list[Message]],
             params: SamplingParams, *, desc: str = "generate", share_prefix: bool = True) -> list[list[str]]:
    """``params.n`` responses per conversation (transformers ``generate``, left padding, length-sorted batches).

    With ``n > 1`` and ``share_prefix``, each prompt is prefilled once and its key/value cache repeated ``n``
    times (``generate``'s ``num_return_sequences`` would prefill every copy): on CPU, where the config-bearing
    prompt dominates, sampling gets several times faster. Positions follow ``generate``'s own left-padding rule,
    so the samples are distributed exactly as without sharing.
    """
    from csrm.model.formatting import pad_batch

    prompts = render_prompts(tokenizer, conversations)
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    per_call = max(1, params.batch_size // max(1, params.n))
    results: list[list[str]] = [[] for _ in prompts]
    device = next(model.parameters()).device
    torch.manual_seed(params.seed)
    was_training = model.training
    model.eval()
    kwargs: dict[str, Any] = {"max_new_tokens": params.max_new_tokens, "pad_token_id": tokenizer.pad_token_id,
                              "eos_token_id": tokenizer.eos_token_id}
    if params.do_sample:
        kwargs.update(do_sample=True, temperature=params.temperature, top_p=params.top_p, top_k=0)
    else:
        kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
    for start in tqdm(range(0, len(order), per_call), desc=desc, unit="batch", leave=False):
        chunk = order[start:start + per_call]
        batch = pad_batch([prompts[i] for i in chunk], tokenizer.pad_token_id, padding_side="left")
        batch = {k: v.to(device) for k, v in batch.items()}
        if params.n > 1 and share_prefix and batch["input_ids"].shape[1] > 1:
            out = _generate_shared_prefix(model, batch, params.n, kwargs)
        else:
            out = model.generate(**batch, num_return_sequences=params.n, **kwargs)
        new = out[:, batch["input_ids"].shape[1]:]
        texts = tokenizer.batch_decode(new, skip_special_tokens=True)
        for j, i in enumerate(chunk):
            results[i] = [t.strip() for t in texts[j * params.n:(j + 1) * params.n]]
    model.train(was_training)
    return results


def _generate_shared_prefix(model: PreTrainedModel, batch: dict[str, torch.Tensor], n: int,
                            kwargs: dict[str, Any]) -> torch.Tensor:
    """Prefill all but the last prompt token once, repeat the cache ``n`` times, then sample."""
    ids, mask = batch["input_ids"], batch["attention_mask"]
    positions = (mask.long().cumsum(-1) - 1).clamp(min=0)  # generate's rule for left padding
    prefill = model(input_ids=ids[:, :-1], attention_mask=mask[:, :-1], position_ids=positions[:, :-1],
                    use_cache=True)
    cache = output_cache(prefill)  # the output's cache under either name (transformers 5.24 renamed it)
    cache.batch_repeat_interleave(n)
    cache_kwarg = {cache_argument(model) or "past_key_values": cache}  # ``cache`` since 5.24 (the old name warns)
    return model.generate(input_ids=ids.repeat_interleave(n, dim=0), attention_mask=mask.repeat_interleave(n, dim=0),
                          **cache_kwarg, **kwargs)


# -- log-probabilities ---------------------------------------------------------------------------------
def completion_ids(tokenizer: PreTrainedTokenizerBase, messages: list[Message], completion: str
                   ) -> tuple[list[int], list[int]]:
    """(prompt ids, completion ids) the way trl.DPOTrainer splits a conversational example."""
    prompt = render_prompts(tokenizer, [messages])[0]
    full = tokenizer.apply_chat_template(messages + [{"role": "assistant", "content": completion}],
                                         tokenize=True, return_dict=False)
    full = list(full["input_ids"] if hasattr(full, "keys") else full)
    common = 0
    for a, b in zip(prompt, full, strict=False):
        if a != b:
            break
        common += 1
    return full[:common], full[common:]


@torch.no_grad()
def completion_logps(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase,
                     conversations: Sequence[list[Message]], completions: Sequence[str], *,
                     batch_size: int = 8, max_length: int | None = None) -> list[float]:
    """Summed log p(completion | prompt) under ``model`` for each (conversation, completion)."""
    from csrm.model.formatting import pad_batch

    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    encoded = [completion_ids(tokenizer, m, c) for m, c in zip(conversations, completions, strict=True)]
    out: list[float] = []
    for start in range(0, len(encoded), batch_size):
        chunk = encoded[start:start + batch_size]
        seqs, spans = [], []
        for prompt, completion in chunk:
            seq = (prompt + completion)[:max_length] if max_length else prompt + completion
            seqs.append(seq)
            spans.append((len(prompt), len(seq)))
        batch = pad_batch(seqs, tokenizer.pad_token_id, padding_side="right")
        batch = {k: v.to(device) for k, v in batch.items()}
        logits = model(**batch).logits.float()
        logprobs = torch.log_softmax(logits[:, :-1], dim=-1)
        targets = batch["input_ids"][:, 1:]
        token_lp = logprobs.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
        for row, (begin, end) in enumerate(spans):
            out.append(float(token_lp[row, max(begin - 1, 0):end - 1].sum()) if end > begin else 0.0)
    model.train(was_training)
    return out
