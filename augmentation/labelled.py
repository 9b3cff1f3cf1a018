"""The record every source adapter yields (:class:`LabelledRecord`), in a module of its own so that the
adapters of :mod:`augmentation.sources` and :mod:`augmentation.hub_sources` share it without importing each
other."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from csrm.base.records import SourceRecord
from csrm.base.safety_config import SafetyConfig


@dataclass
class LabelledRecord(SourceRecord):
    """A :class:`SourceRecord` plus what augmentation needs to know about its labels.

    ``uncertain``: categories that *may* be present (unknown source flags) -> their worst severity.
    ``severity_known``: False when the severity is the mapping's default, not graded by the source.
    ``configs``: safety configs that came with the row (CoSAlign-Test's test config, a JSONL ``config``).
    """

    uncertain: dict[str, int] = field(default_factory=dict)
    severity_known: bool = True
    configs: list[SafetyConfig] = field(default_factory=list)

    @property
    def is_request(self) -> bool:
        return self.response is None


def numbered(rows: Iterable[dict[str, Any]]) -> Iterator[tuple[int, dict[str, Any]]]:
    return ((i, dict(row)) for i, row in enumerate(rows, start=1))
