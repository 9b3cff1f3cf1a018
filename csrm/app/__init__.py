"""Application layer: the ``csrm`` command and ``csrm run``; the only layer that imports :mod:`augmentation`
and :mod:`eval`."""
