"""Where the vector corpus and its schema are: shipped with the package, or a checkout's.

The repository keeps the corpus at the top, in ``vectors/``, beside the ``wscompat``
package rather than inside it: it is data, read and extended by people who never open
the code. The build ships that same directory as the package data ``wscompat/corpus``
(a ``package-dir`` mapping in ``pyproject.toml``), so an installed wscompat finds it
through :mod:`importlib.resources` wherever it was installed, and ``wscompat vectors
check`` and ``wscompat replay`` need no path. Run from a checkout (an editable install,
or ``PYTHONPATH``), where no ``wscompat/corpus`` directory exists, it is the checkout's
``vectors/``.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

__all__ = ["SCHEMA_NAME", "corpus_dir", "schema_bytes"]

SCHEMA_NAME = "schema.json"
"""The schema's file name, at the top of the corpus; every vector there and every
recording points at it as ``../schema.json``."""


def corpus_dir() -> Path:
    """The directory of the vector corpus (``<draft>/*.json`` and the schema).

    Raises FileNotFoundError when neither the installed package nor a checkout has it.
    """
    packaged = resources.files("wscompat").joinpath("corpus")
    if isinstance(packaged, Path) and (packaged / SCHEMA_NAME).is_file():
        return packaged
    checkout = Path(__file__).resolve().parents[2] / "vectors"
    if (checkout / SCHEMA_NAME).is_file():
        return checkout
    raise FileNotFoundError("the vector corpus is not installed with this wscompat "
                            f"(looked in {packaged} and {checkout})")


def schema_bytes() -> bytes:
    """The JSON Schema of the vector format, as shipped."""
    return (corpus_dir() / SCHEMA_NAME).read_bytes()
