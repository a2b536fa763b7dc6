"""Every vector file, checked offline through the sans-I/O core, whole and byte by byte."""

from __future__ import annotations

from pathlib import Path

import pytest

from wscompat.vectors.format import Vector, check, load_all

VECTORS = sorted(load_all([Path(__file__).parents[2] / "vectors"]), key=lambda v: v.id)


@pytest.mark.parametrize("bytewise", [False, True], ids=["whole", "bytewise"])
@pytest.mark.parametrize("vector", VECTORS, ids=[v.id for v in VECTORS])
def test_vector(vector: Vector, bytewise: bool) -> None:
    result = check(vector, bytewise=bytewise)
    assert result.ok, (
        f"{vector.id}: {result.problem}\n"
        f"expected: {result.expected[:200]!r}\nactual:   {result.actual[:200]!r}"
    )


def test_every_draft_has_vectors() -> None:
    drafts = {v.draft for v in VECTORS}
    assert {d.value for d in drafts if d} == {"hixie-75", "hixie-76", "hybi-07", "hybi-08",
                                               "rfc6455"}


EXTENSION_DIRS = {"permessage-deflate", "deflate-frame"}
"""Compression vectors live by extension; their ``draft`` is a hybi one."""


def test_every_vector_names_its_source() -> None:
    for vector in VECTORS:
        assert len(vector.source) > 10, vector.id
        assert vector.draft is not None
        if vector.path.parent.name in EXTENSION_DIRS:
            assert vector.draft.caps.extensions, vector.id
        else:
            assert vector.path.parent.name == vector.generation, vector.id


def test_rfc_section_5_7_examples_are_all_recorded() -> None:
    """The RFC's example frames, as printed in §5.7, all appear in the rfc6455 vectors."""
    corpus = " ".join(v.path.read_text() for v in VECTORS if v.id.startswith("rfc6455/"))
    for example in ("81 85 37 fa 21 3d 7f 9f 4d 51 58", "81 05 48 65 6c 6c 6f",
                    "8a 85 37 fa 21 3d 7f 9f 4d 51 58", "8a 05 48 65 6c 6c 6f", "82 7e 01 00",
                    "82 7f 00 00 00 00 00 01 00 00", "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="):
        assert example in corpus, example
