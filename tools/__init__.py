"""Research tools run as ``python -m tools.<name>`` from a clone (not installed; nothing in csrm, augmentation or eval
imports them)."""
