"""The policy judge: one saved CSRM that reads any policy, routing its category allow lists to the category
reader and its free-text rules to the rule judge.

Modules: :mod:`~csrm.model.policy.router` (which unit of a policy is which), :mod:`~csrm.model.policy.saved` (the
folder: config and the two readers), :mod:`~csrm.model.policy.args` (settings), :mod:`~csrm.model.policy.trainer`
(fit the router, compose) and :mod:`~csrm.model.policy.predictor` (route, score, combine). Importing this package
imports nothing heavy.
"""
