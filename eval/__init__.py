"""Evaluation harness: CoSApien, DynaBench and CoSAlign-Test loaders, metrics and reports for any scorer
(the CSRM, a config-blind CSRM via :func:`eval.items.blind_items`, the zero-shot LLM judge baseline).

Entry point: ``csrm eval`` (:func:`csrm.app.eval.main`). Heavy modules (torch, transformers, datasets) are
imported lazily.
"""

from eval.items import EvalItem, blind_items

__all__ = ["EvalItem", "blind_items"]
