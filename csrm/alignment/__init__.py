"""Alignment layer: ``csrm align`` (the CoSAlign loop with the CSRM as judge), policies and CoSA-Score.

Imports every layer below it; never :mod:`augmentation` or :mod:`eval` (the application layer wires those in).
"""
