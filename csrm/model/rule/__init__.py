"""The rule judge: a cross-encoder that reads a numbered policy rule by rule against every Agent turn.

Modules: :mod:`~csrm.model.rule.args` (settings), :mod:`~csrm.model.rule.data` (rows -> rules, turns,
violations), :mod:`~csrm.model.rule.modeling` (pair encoding, the one-logit cross-encoder),
:mod:`~csrm.model.rule.candidates` (frozen-similarity narrowing), :mod:`~csrm.model.rule.aggregation` (the
OR over pairs, calibration), :mod:`~csrm.model.rule.trainer` and :mod:`~csrm.model.rule.predictor`.
Importing this package imports nothing heavy.
"""
