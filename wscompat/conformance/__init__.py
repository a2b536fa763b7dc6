"""Conformance of any WebSocket server: ``wscompat conform URL``.

- :mod:`.cases`: Autobahn|Testsuite's catalogue, sections 1-7, 9 and 10, as data;
  :mod:`.compression` its sections 12 and 13 (permessage-deflate); :mod:`.legacy`
  wscompat's own for hixie-75, hixie-76, hybi-07 and hybi-08; :mod:`.catalogue` all
  of them and the ``--cases`` selection.
- :mod:`.wire`: the client's codecs, sans I/O, written from the documents.
- :mod:`.runner` and :mod:`.legacy_runner`: play one case over raw TCP with trio.
- :mod:`.verdict`: what was observed, and Autobahn's way of judging it.
- :mod:`.report`: terminal lines, JSON and the static HTML report; :mod:`.cli` the
  command.
"""

from wscompat.conformance.catalogue import AnyCase, catalogue, select
from wscompat.conformance.runner import play, run_all
from wscompat.conformance.timing import Timing
from wscompat.conformance.verdict import Result, Verdict
from wscompat.conformance.wire import Target, parse_url

__all__ = ["AnyCase", "Result", "Target", "Timing", "Verdict", "catalogue", "parse_url",
           "play", "run_all", "select"]
