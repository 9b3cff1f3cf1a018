"""The clause-reading CSRM family: model, features, training config, trainer and predictor."""
