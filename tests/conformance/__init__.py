"""An RFC 6455 conformance client modelled on the Autobahn|Testsuite fuzzing client.

``cases`` holds the catalogue (sections 1-7, 9 and 10) as data, ``runner`` plays one
case against a server over raw TCP and judges it, and ``report`` runs them all against
any server from the command line: ``python -m tests.conformance.report HOST PORT``.
"""

from .cases import Case, catalogue
from .runner import Result, Timing, Verdict, run_case

__all__ = ["Case", "Result", "Timing", "Verdict", "catalogue", "run_case"]
