"""Scoring layer: load a trained CSRM and score, rank, threshold, serve and export it.

Imports :mod:`csrm.base` and :mod:`csrm.model`.
"""
