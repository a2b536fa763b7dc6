"""The whole catalogue, and the selection ``--cases`` makes of it."""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Sequence

from wscompat.conformance.cases import Case, Sizes, autobahn, largest_message
from wscompat.conformance.compression import section12, section13
from wscompat.conformance.legacy import LegacyCase, legacy

__all__ = ["AnyCase", "catalogue", "largest", "matches", "sections", "select"]

AnyCase = Case | LegacyCase


def catalogue(sizes: Sizes | None = None) -> list[AnyCase]:
    """Autobahn's sections 1-7, 9, 10, 12 and 13 in its order, then the legacy drafts."""
    sizes = sizes or Sizes()
    cases: list[AnyCase] = [*autobahn(sizes), *section12(sizes), *section13(sizes), *legacy()]
    ids = [case.id for case in cases]
    if len(set(ids)) != len(ids):
        raise AssertionError("duplicate case ids in the catalogue")
    return cases


def matches(case_id: str, pattern: str) -> bool:
    """``7.9.*`` matches as a shell pattern; ``7``, ``7.9`` or ``hixie-76`` name a
    section or a group of cases and match everything in it."""
    return fnmatch.fnmatchcase(case_id, pattern) or fnmatch.fnmatchcase(case_id, f"{pattern}.*")


def select(cases: Iterable[AnyCase], patterns: Sequence[str]) -> list[AnyCase]:
    """The cases any pattern matches, in catalogue order (all of them without patterns)."""
    return [c for c in cases if not patterns or any(matches(c.id, p) for p in patterns)]


def sections(cases: Iterable[AnyCase]) -> list[str]:
    return list(dict.fromkeys(case.section for case in cases))


def largest(cases: Iterable[AnyCase]) -> int:
    """An upper bound on the largest message a case of ``cases`` sends (Autobahn's
    cases; the legacy ones stay under 64 KiB)."""
    return max(largest_message(c for c in cases if isinstance(c, Case)), 65536)
