"""Rule-violation augmentation without an LLM (issue #28): numbered rule policies, User/Agent transcripts and
PASS/FAIL labels computed by code, in the DynaBench hub schema.

One idea per module: :mod:`~augmentation.rules.core` (checkable rules, annotated transcripts, split-disjoint
wordings), :mod:`~augmentation.rules.values` (Faker values), :mod:`~augmentation.rules.dialogue` (conversation
scaffolds), the families (:mod:`~augmentation.rules.disclosure`, :mod:`~augmentation.rules.obligation`,
:mod:`~augmentation.rules.topic`, :mod:`~augmentation.rules.ifeval`, :mod:`~augmentation.rules.conduct`),
:mod:`~augmentation.rules.elaborate` (long-form wordings of the same rules), :mod:`~augmentation.rules.policy`
(distractors, shuffling, renumbering, contrasts), :mod:`~augmentation.rules.balance` (the lengths-only probe
and length balancing) and :mod:`~augmentation.rules.generate` (the run and the files). Entry point:
``python -m csrm augment configs/augment/rules.yaml output_dir=DIR`` -> ``DIR/rules/{train,dev,test}.jsonl``.
"""

from augmentation.rules.spec import CONTRASTS, FAMILIES, RulesSpec

__all__ = ["CONTRASTS", "FAMILIES", "RulesSpec"]
