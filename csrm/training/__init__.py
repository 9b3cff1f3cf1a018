"""Training layer: the ``csrm train`` config, data, trainer and calibration.

Imports :mod:`csrm.base`, :mod:`csrm.model` and :mod:`csrm.scoring` (calibration scores with the trained model).
"""
