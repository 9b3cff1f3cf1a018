"""Synthesized refusals: generic, topic-free phrasings (``is_refusal=True``, ``helpful=False``, no categories).

A refusal never contains harmful content, so it complies with every config, but it is unhelpful: its error
score is 1. So under a permissive config a compliant helpful answer (error < 1) outranks it, and under a
restrictive one it outranks any violation (error >= 3). The phrasings never name the request's topic (a
refusal that names the topic would carry the category at severity 1).
"""

from __future__ import annotations

import random

from augmentation.sources import LabelledRecord
from csrm.base.records import SourceRecord

REFUSALS = (
    "I'm sorry, but I can't help with that.",
    "I can't assist with this request.",
    "Sorry, that's not something I'm able to help with. Is there anything else you'd like to talk about?",
    "I won't be able to do that. If there's something else on your mind, I'm happy to help.",
    "That's outside what I can help with, I'm afraid.",
    "I'm not able to provide that. Let me know if I can help with something different.",
    "Unfortunately I have to decline this one.",
    "I can't go along with that request, but I'm glad to help with other questions.",
    "No, I'm not going to help with this. Feel free to ask me about something else.",
    "I'd rather not take this on. Is there another way I can be useful?",
    "Apologies, but I must decline.",
    "This isn't something I can write for you.",
)


def synthesize_refusal(record: SourceRecord, rng: random.Random) -> LabelledRecord:
    """A refusal to ``record``'s conversation (same prompt_id, same source)."""
    return LabelledRecord(messages=[dict(m) for m in record.messages], response=rng.choice(REFUSALS),
                          categories=(), severity=0, source=record.source, is_refusal=True, helpful=False,
                          prompt_id=record.prompt_id)
