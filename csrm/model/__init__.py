"""Model layer: the networks (cross-encoder and clause-reading CSRMs), input formatting and the objective.

Imports only :mod:`csrm.base`.
"""
