"""csrm: Configurable Safety Reward Models."""

from csrm.base.compliance import complies, error_score
from csrm.base.errors import InputError
from csrm.base.records import Example, PreferencePair, SourceRecord
from csrm.base.safety_config import SafetyConfig
from csrm.base.taxonomy import RiskTaxonomy, Severity

__version__ = "0.1.0"

__all__ = [
    "load",
    "Example",
    "InputError",
    "PreferencePair",
    "RiskTaxonomy",
    "SafetyConfig",
    "Severity",
    "SourceRecord",
    "complies",
    "error_score",
]


def __getattr__(name: str):
    """Lazy ``csrm.load`` (= :func:`csrm.scoring.scorer.load`), so ``import csrm`` does not pull in torch."""
    if name == "load":
        from csrm.scoring.scorer import load

        return load
    raise AttributeError(f"module 'csrm' has no attribute {name!r}")
