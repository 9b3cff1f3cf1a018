"""Candidate narrowing: which rules the cross-encoder reads against which Agent window.

A 100-rule policy times every window of every Agent turn is too many cross-encoder pairs (issue 28's cost
target is <= 3x the clause scorer per DynaBench item). Before the cross-encoder, a **frozen** bi-encoder
(all-MiniLM-L6-v2 through sentence-transformers, the same backbone the project caches elsewhere) embeds every
rule once per policy and every window once; each window keeps its ``top_k`` most similar rules by cosine.
Two kinds of rule are kept for every window whatever their similarity:

- rules that apply to every turn (format, length, style, language, greeting rules: "Use no more than three
  sentences in any response", "Do not use sarcasm"), found by :func:`applies_everywhere` (an unconditional
  rule about the form of a response). Their wording shares nothing with the content they constrain, so a
  similarity ranking would drop them;
- all rules when the policy has at most ``top_k`` rules (nothing to narrow).

The recall of this step (violated (rule, turn) pairs that survive it) is measured by the evaluation tool
(``tools/rule_judge_eval.py``) on the generated test split and on DynaBench's FAIL items.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

from csrm.model.sentence_embedder import Embed

_CONDITION = re.compile(r"\b(if|when|whenever|once|unless|in the case|in case|should the user|upon|after the "
                        r"user|where the user|for any (?:user|question|request) (?:about|regarding))\b", re.I)
_FORM = re.compile(r"\b(respon[sd]\w*|repl(?:y|ies)|answers?|messages?|sentences?|words?|characters?|emojis?|"
                   r"tone|sarcas\w*|capital\w*|lowercase|uppercase|bullet\w*|paragraphs?|markdown|format\w*|"
                   r"language|english|commas?|punctuation|greet\w*|sign[- ]off|end (?:with|every)|"
                   r"start (?:with|every)|begin (?:with|every)|polite\w*|formal|informal|slang|profan\w*|"
                   r"jargon|exclamation|title|quotation|lists?|json|every turn|all responses|always)\b", re.I)


def applies_everywhere(rule: str) -> bool:
    """True for an unconditional rule about the form of every response (module doc)."""
    head = rule[:300]
    return not _CONDITION.search(head) and bool(_FORM.search(head))


def select(rules: Sequence[str], windows: Sequence[str], *, top_k: int, embed: Embed | None,
           always_rules: bool = True, contexts: Sequence[str] | None = None,
           excluded: Sequence[set[int]] | None = None) -> list[list[int]]:
    """For each window, the indices of the rules the cross-encoder judges against it (module doc).

    A rule's similarity to a window is the larger of its cosine to the window and to the window's context
    (the preceding User turn, ``contexts``): a conditional rule ("if the user mentions Y, include Z") is
    broken by an Agent turn that shares no word with it, and only the User turn names Y. ``embed`` ``None``
    (or a policy with at most ``top_k`` rules) keeps every rule for every window. ``excluded``: per window,
    rules that cannot apply to it (:mod:`csrm.model.rule.conditions`); they are never kept, and the ``top_k``
    places go to the others."""
    out = [list(range(len(rules))) for _ in windows]
    if embed is not None and len(rules) > top_k and windows:
        out = _narrow(rules, windows, top_k=top_k, embed=embed, always_rules=always_rules, contexts=contexts,
                      excluded=excluded)
    if excluded is not None:
        if len(excluded) != len(windows):
            raise ValueError(f"{len(excluded)} exclusion sets for {len(windows)} windows")
        out = [[i for i in keep if i not in gone] for keep, gone in zip(out, excluded, strict=True)]
    return out


def _narrow(rules: Sequence[str], windows: Sequence[str], *, top_k: int, embed: Embed, always_rules: bool,
            contexts: Sequence[str] | None, excluded: Sequence[set[int]] | None) -> list[list[int]]:
    fixed = {i for i, r in enumerate(rules) if always_rules and applies_everywhere(r)}
    rule_vectors = embed(list(rules))
    sims = embed(list(windows)) @ rule_vectors.T  # [windows, rules] cosine
    if contexts is not None:
        if len(contexts) != len(windows):
            raise ValueError(f"{len(contexts)} contexts for {len(windows)} windows")
        sims = np.maximum(sims, embed([c or w for c, w in zip(contexts, windows, strict=True)]) @ rule_vectors.T)
    out = []
    for w, row in enumerate(sims):
        gone = excluded[w] if excluded is not None else set()
        order = [int(i) for i in np.argsort(-row, kind="stable") if int(i) not in gone]
        out.append(sorted((fixed - gone) | set(order[:top_k])))
    return out
