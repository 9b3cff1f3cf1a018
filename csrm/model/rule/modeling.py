"""The rule judge's model: a cross-encoder over one (rule, Agent turn window) pair at a time.

Input of one pair, as the tokenizer's own pair template builds it (``[CLS] A [SEP] B [SEP]`` for MiniLM; a
decoder's tokenizer such as SmolLM2's adds nothing between two segments, so :data:`TEXT_TEMPLATE` writes the
boundaries in words and ends on a question whose last token the classifier reads):

- A = the rule's text (its first ``rule_max_tokens`` tokens; DynaBench's median rule is ~290 characters);
- B = ``User: <tail of the preceding User turn> Agent: <window of the judged Agent turn>``.

The judged Agent text is never truncated: a turn is cut into character windows first (:func:`turn_windows`;
only a sentence that repeats an earlier one word for word is read once), and a window whose tokens still do
not fit beside the rule and the context is split again at token level (:func:`fit_window`). Only the rule's tail and the context's head may
be cut, and neither is judged content. Cross-attention between the rule and the text is the point (issue 28:
the frozen-similarity reader cannot see negation, conditions or "contains a value of type X").

The head is ``AutoModelForSequenceClassification`` with one logit, ``problem_type="multi_label_classification"``
so that transformers' own loss is binary cross-entropy on P(this pair violates). Any backbone transformers
classifies with works: an encoder (MiniLM, pooled at ``[CLS]``) or a decoder (SmolLM2-135M-Instruct, pooled at
its last non-padding token; ``token_type_ids`` are passed only to models whose tokenizer names them).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers import (
    AutoConfig,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    PreTrainedTokenizerBase,
)

from csrm.base.memory import release_freed_memory
from csrm.base.paths import resolve_model_name
from csrm.base.text import distinct_sentences, windows

CONTEXT_TAG, AGENT_TAG = "User: ", "Agent: "
TEXT_TEMPLATE = ("Rule: ", "\nConversation:\n", "\nDoes the Agent's reply break the rule?")
"""(before the rule, between rule and text, after the text) for tokenizers without a pair template of special
tokens: the last token of the question is where a decoder's classifier reads the pair."""


@dataclass(frozen=True)
class Pair:
    """One judged unit: a rule against one window of an Agent turn, with the preceding User turn as context.
    ``rule_index`` / ``turn_index`` / ``window_index`` locate it in its item (for aggregation and evidence)."""

    rule: str
    context: str
    window: str
    rule_index: int = 0
    turn_index: int = 0
    window_index: int = 0


def turn_windows(text: str, window_chars: int) -> list[str]:
    """The windows of one turn the cross-encoder reads, in training and in scoring alike: the turn without its
    verbatim repeats (:func:`~csrm.base.text.distinct_sentences`) cut at word boundaries into overlapping
    windows of at most ``window_chars`` characters; an empty turn is one empty window."""
    return windows(distinct_sentences(text), window_chars) or [""]


def load_backbone(name_or_path: str, *, from_config: bool = False
                  ) -> tuple[PreTrainedTokenizerBase, torch.nn.Module]:
    """Tokenizer and a one-logit classification model. ``from_config`` builds the architecture with fresh
    weights (tests on a tiny config); otherwise pretrained weights are loaded (a new head for a backbone)."""
    path = resolve_model_name(name_or_path)
    tokenizer = AutoTokenizer.from_pretrained(path)
    if tokenizer.pad_token is None:  # GPT-2-style decoders: batches are padded, and the classifier must find
        tokenizer.pad_token = tokenizer.eos_token  # the last real token (transformers skips pad ids)
    config = AutoConfig.from_pretrained(path, num_labels=1, problem_type="multi_label_classification")
    if getattr(config, "pad_token_id", None) is None:
        config.pad_token_id = tokenizer.pad_token_id
    if from_config:
        model = AutoModelForSequenceClassification.from_config(config)
    else:
        model = AutoModelForSequenceClassification.from_pretrained(path, config=config)
    return tokenizer, model


class PairEncoder:
    """Turns :class:`Pair`\\ s into token ids within ``max_length`` (module doc)."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase, *, max_length: int = 256, rule_max_tokens: int = 112,
                 context_max_tokens: int = 48):
        self.tokenizer = tokenizer
        self.max_length, self.rule_max, self.context_max = max_length, rule_max_tokens, context_max_tokens
        self.template = _pair_template(tokenizer)
        self.special = sum(len(part) for part in self.template[0])
        self.inputs = ("input_ids", "token_type_ids", "attention_mask") \
            if "token_type_ids" in tokenizer.model_input_names else ("input_ids", "attention_mask")
        if max_length - self.special - rule_max_tokens - context_max_tokens < 16:
            raise ValueError(f"max_length {max_length} leaves under 16 tokens for the judged window")

    def join(self, first: list[int], second: list[int]) -> tuple[list[int], list[int]]:
        """(input ids, token type ids) of a pair, with the tokenizer's own special tokens around them."""
        (prefix, middle, suffix), (type_a, type_b) = self.template
        ids = prefix + first + middle + second + suffix
        types = [type_a] * (len(prefix) + len(first) + len(middle)) + [type_b] * (len(second) + len(suffix))
        return ids, types

    def _ids(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"] if text else []

    def window_budget(self, rule_ids: list[int], context_ids: list[int]) -> int:
        """Tokens left for the judged window beside this rule and context."""
        return self.max_length - self.special - len(rule_ids) - len(context_ids)

    def fit_window(self, rule: str, context: str, window: str) -> list[list[int]]:
        """Token ids of the second segment(s) for one pair: one list when the window fits, else the window
        split into consecutive token chunks that each fit (nothing of the judged text is dropped)."""
        rule_ids = self._ids(rule)[: self.rule_max]
        context_ids = []
        if context.strip() and self.context_max > 0:
            tag = self._ids(CONTEXT_TAG)
            context_ids = (tag + self._ids(context)[-max(1, self.context_max - len(tag)):])[-self.context_max:]
        agent_ids = self._ids(AGENT_TAG + window)
        budget = self.window_budget(rule_ids, context_ids)
        chunks = [agent_ids[i: i + budget] for i in range(0, max(1, len(agent_ids)), budget)]
        return [context_ids + chunk for chunk in chunks]

    def encode(self, pairs: list[Pair]) -> tuple[list[dict[str, list[int]]], list[int]]:
        """(features, owner): one feature dict per model input, and for each the index of its pair."""
        features, owner = [], []
        for n, pair in enumerate(pairs):
            rule_ids = self._ids(pair.rule)[: self.rule_max]
            for second in self.fit_window(pair.rule, pair.context, pair.window):
                ids, types = self.join(rule_ids, second)
                features.append({"input_ids": ids, "token_type_ids": types, "attention_mask": [1] * len(ids)})
                owner.append(n)
        return features, owner

    def collate(self, features: list[dict[str, list[int]]]) -> dict[str, torch.Tensor]:
        """Pad a batch to its longest input (the tokenizer's own padding)."""
        keep = [{k: v for k, v in f.items() if k in self.inputs} for f in features]
        batch = self.tokenizer.pad(keep, return_tensors="pt")
        if "labels" in features[0]:
            batch["labels"] = torch.tensor([[float(f["labels"])] for f in features])
        return batch


def _pair_template(tokenizer: PreTrainedTokenizerBase) -> tuple[tuple[list[int], list[int], list[int]],
                                                                  tuple[int, int]]:
    """The special tokens a tokenizer puts before, between and after a pair, and the two segments' token type
    ids, read off one encoded pair (transformers 5 no longer exposes ``build_inputs_with_special_tokens``);
    :data:`TEXT_TEMPLATE`'s tokens where the tokenizer puts nothing between the two segments (a decoder's)."""
    first = tokenizer("a", add_special_tokens=False)["input_ids"]
    second = tokenizer("b", add_special_tokens=False)["input_ids"]
    full = tokenizer("a", "b")
    ids, types = full["input_ids"], full.get("token_type_ids") or [0] * len(full["input_ids"])
    i = next(k for k in range(len(ids)) if ids[k: k + len(first)] == first)
    j = next(k for k in range(i + len(first), len(ids)) if ids[k: k + len(second)] == second)
    parts = (ids[:i], ids[i + len(first): j], ids[j + len(second):])
    if not parts[1]:
        before, between, after = (tokenizer(text, add_special_tokens=False)["input_ids"] for text in TEXT_TEMPLATE)
        parts = (parts[0] + before, between, after + parts[2])
    return parts, (types[i], types[j])


@torch.inference_mode()
def pair_logits(model: torch.nn.Module, encoder: PairEncoder, pairs: list[Pair], *, batch_pairs: int = 64
                ) -> list[float]:
    """One violation logit per pair: the max over the token chunks of a pair that had to be split (an OR
    within the pair). Inputs are sorted by length so that batches pad little."""
    if not pairs:
        return []
    model.eval()
    device = next(model.parameters(), torch.empty(0)).device  # where the model is (a GPU after GPU training)
    features, owner = encoder.encode(pairs)
    order = sorted(range(len(features)), key=lambda i: len(features[i]["input_ids"]))
    logits = [0.0] * len(features)
    for start in range(0, len(order), batch_pairs):
        chunk = order[start: start + batch_pairs]
        batch = {k: v.to(device) for k, v in encoder.collate([features[i] for i in chunk]).items()}
        out = model(**batch).logits[:, 0].float().tolist()
        for i, z in zip(chunk, out, strict=True):
            logits[i] = z
        release_freed_memory()  # batches of changing length fragment the heap (csrm.base.memory)
    per_pair = [float("-inf")] * len(pairs)
    for i, n in enumerate(owner):
        per_pair[n] = max(per_pair[n], logits[i])
    return per_pair


def freeze_lower(model: torch.nn.Module, layers: int) -> int:
    """Freeze the embeddings and the ``layers`` lowest transformer layers (BERT-style ``base.encoder.layer`` or
    Llama-style ``base.layers``); returns the number of trainable parameters left. ``layers`` 0 freezes nothing.
    Only the layers above the frozen ones are back-propagated through: the cost that matters on 2 CPU cores."""
    if layers <= 0:
        return sum(p.numel() for p in model.parameters() if p.requires_grad)
    base = model.base_model
    stack = getattr(getattr(base, "encoder", None), "layer", None) or getattr(base, "layers", None)
    embeddings = getattr(base, "embeddings", None) or base.get_input_embeddings()
    if stack is None or embeddings is None:
        raise ValueError(f"freeze_layers: {type(base).__name__} has no embeddings/encoder.layer/layers to freeze")
    if layers > len(stack):
        raise ValueError(f"freeze_layers: {layers} > the backbone's {len(stack)} layers")
    for module in [embeddings, *stack[:layers]]:
        for param in module.parameters():
            param.requires_grad_(False)
    return sum(p.numel() for p in model.parameters() if p.requires_grad)

