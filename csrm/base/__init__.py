"""Base layer: what every other layer builds on and nothing here imports from above.

Records and score types, the risk taxonomy, safety configs, the compliance rule, input validation, file I/O
with located errors, fingerprints for resumable outputs, metrics, plots and experiment tracking.
"""
