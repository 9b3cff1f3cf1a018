"""Lay out (config, conversation, response) as one token sequence, config first.

Three text segments, tokenized separately and concatenated (so the config + conversation *prefix* is the
same token ids for every response, which lets decoders reuse its key/value cache):

1. **config**: the safety config text;
2. **conversation**: the turns so far;
3. **response**: the response under judgement, or for request screening the fixed marker
   :data:`SCREENING_MARKER` ("would a full answer comply?").

Templates:

- ``plain`` (encoders, and decoders without a chat template)::

      [CLS] Safety configuration:\\n{config} [SEP] Conversation:\\nUser: ...\\nAssistant: ...\\n
      Response under review:\\n{response} [SEP]

- ``chat`` (decoders with a chat template): the tokenizer's chat template with the config as the system
  message, the conversation as its turns and the response as the final assistant turn; segment texts are the
  increments between renders of [system], [system + conversation + generation prompt] and the full chat.
  Decoders end with EOS, the token the model pools.

**Truncation rule** (budget = ``max_length`` minus special tokens), applied in this order and counted in
:attr:`InputFormatter.stats`:

1. the conversation loses its *oldest* tokens until the whole fits (the latest turn is kept longest);
2. then the response loses its tail, but keeps at least ``min(len, budget // 4)`` tokens;
3. only then the config loses its tail, logged as a warning once and counted in ``config_truncated``.

So the response is never the first thing dropped and the config is never cut silently.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass

import torch
from transformers import PreTrainedTokenizerBase

from csrm.base.records import Message

logger = logging.getLogger(__name__)

SCREENING_MARKER = "[No response given. Judge the request: would a complete answer to it comply?]"
ROLE_NAMES = {"user": "User", "assistant": "Assistant", "system": "System"}


@dataclass
class Encoded:
    """Token ids of one item; ``prefix_len`` = number of leading ids shared by every response."""

    input_ids: list[int]
    prefix_len: int
    truncated: bool


class InputFormatter:
    """Turns items into token ids under the documented template and truncation rule."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase, max_length: int = 512, template: str = "plain",
                 is_decoder: bool = False):
        if template not in {"plain", "chat"}:
            raise ValueError(f"template must be 'plain' or 'chat', got {template!r}")
        if template == "chat" and not getattr(tokenizer, "chat_template", None):
            raise ValueError("template 'chat' needs a tokenizer with a chat template")
        self.tokenizer, self.max_length, self.template, self.is_decoder = tokenizer, max_length, template, is_decoder
        self.stats: Counter[str] = Counter()
        self._warned = False
        if is_decoder:
            bos = tokenizer.bos_token_id if template == "plain" else None
            self.head = [bos] if bos is not None else []
            eos = tokenizer.eos_token_id
            self.middle, self.tail = [], ([eos] if eos is not None else [])
        else:
            cls_id = tokenizer.cls_token_id if tokenizer.cls_token_id is not None else tokenizer.bos_token_id
            sep_id = tokenizer.sep_token_id if tokenizer.sep_token_id is not None else tokenizer.eos_token_id
            self.head = [cls_id] if cls_id is not None else []
            self.middle = [sep_id] if sep_id is not None else []
            self.tail = [sep_id] if sep_id is not None else []

    # -- text segments ---------------------------------------------------------------------------------
    def segments(self, config: str, messages: list[Message], response: str | None) -> tuple[str, str, str]:
        """The (config, conversation, response) texts of one item under the template."""
        response_text = SCREENING_MARKER if response is None else response
        if self.template == "chat":
            return self._chat_segments(config, messages, response_text)
        conversation = "".join(f"{ROLE_NAMES[m['role']]}: {m['content']}\n" for m in messages)
        return (f"Safety configuration:\n{config}", f"\nConversation:\n{conversation}",
                f"Response under review:\n{response_text}")

    def _chat_segments(self, config: str, messages: list[Message], response: str) -> tuple[str, str, str]:
        render = self.tokenizer.apply_chat_template
        system = [{"role": "system", "content": config}]
        s0 = render(system, tokenize=False)
        s1 = render(system + messages, tokenize=False, add_generation_prompt=True)
        s2 = render(system + messages + [{"role": "assistant", "content": response}], tokenize=False)
        if not (s1.startswith(s0) and s2.startswith(s1)):
            raise ValueError("this chat template does not render incrementally; use template: plain")
        return s0, s1[len(s0):], s2[len(s1):]

    # -- ids -----------------------------------------------------------------------------------------
    def encode_batch(self, configs: list[str], conversations: list[list[Message]],
                     responses: list[str | None]) -> list[Encoded]:
        texts = [self.segments(c, m, r) for c, m, r in zip(configs, conversations, responses, strict=True)]
        tok = self.tokenizer
        ids = []
        for i in range(3):  # each distinct segment text is tokenized once (configs and prompts repeat a lot)
            column = [t[i] for t in texts]
            unique = list(dict.fromkeys(column))
            table = dict(zip(unique, tok(unique, add_special_tokens=False)["input_ids"], strict=True))
            ids.append([table[text] for text in column])
        return [self._assemble(c, v, r) for c, v, r in zip(*ids, strict=True)]

    def encode(self, config: str, messages: list[Message], response: str | None) -> Encoded:
        return self.encode_batch([config], [messages], [response])[0]

    def _assemble(self, config: list[int], conversation: list[int], response: list[int]) -> Encoded:
        budget = self.max_length - len(self.head) - len(self.middle) - len(self.tail)
        total = len(config) + len(conversation) + len(response)
        truncated = total > budget
        if truncated:
            self.stats["truncated"] += 1
            keep_conv = max(0, budget - len(config) - len(response))
            if keep_conv < len(conversation):
                self.stats["conversation_truncated"] += 1
                conversation = conversation[len(conversation) - keep_conv:] if keep_conv else []
            over = len(config) + len(conversation) + len(response) - budget
            if over > 0:
                floor = min(len(response), budget // 4)
                cut = min(over, len(response) - floor)
                if cut > 0:
                    self.stats["response_truncated"] += 1
                    response = response[: len(response) - cut]
            over = len(config) + len(conversation) + len(response) - budget
            if over > 0:
                self.stats["config_truncated"] += 1
                if not self._warned:
                    logger.warning("safety config (%d tokens) does not fit beside the conversation and response "
                                   "in the %d-token budget: its tail is cut; raise max_length to keep it whole",
                                   len(config), budget)
                    self._warned = True
                config = config[: len(config) - over]
        self.stats["items"] += 1
        prefix = self.head + config + self.middle + conversation
        return Encoded(prefix + response + self.tail, len(prefix), truncated)


def pad_batch(sequences: list[list[int]], pad_id: int, *, padding_side: str = "right",
              pad_to_multiple_of: int | None = None) -> dict[str, torch.Tensor]:
    """Pad id lists to the longest (optionally a multiple of N) -> ``input_ids`` and ``attention_mask``."""
    longest = max(len(s) for s in sequences)
    if pad_to_multiple_of:
        longest = -(-longest // pad_to_multiple_of) * pad_to_multiple_of
    ids = torch.full((len(sequences), longest), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), longest), dtype=torch.long)
    for row, seq in enumerate(sequences):
        span = slice(longest - len(seq), longest) if padding_side == "left" else slice(0, len(seq))
        ids[row, span] = torch.tensor(seq, dtype=torch.long)
        mask[row, span] = 1
    return {"input_ids": ids, "attention_mask": mask}
