"""The cross-encoder CSRM family: one (config, conversation, response) sequence through a fine-tuned backbone."""
