"""The Flash socket policy file, for web-socket-js clients.

Flash Player asks ``<policy-file-request/>\\0`` on port 843 and then on the target port
before it lets a SWF open a socket; the answer is the policy XML followed by a NUL byte,
after which the server closes the connection.
"""

from __future__ import annotations

from xml.sax.saxutils import quoteattr

__all__ = ["DEFAULT_POLICY", "make_policy", "policy_response"]


def make_policy(domain: str = "*", to_ports: str = "*", *, secure: bool | None = None) -> str:
    """A cross-domain policy allowing ``domain`` to reach ``to_ports`` (``"80,8080"``)."""
    secure_attr = "" if secure is None else f" secure={quoteattr(str(secure).lower())}"
    return (
        '<?xml version="1.0"?>\n'
        '<!DOCTYPE cross-domain-policy SYSTEM "/xml/dtds/cross-domain-policy.dtd">\n'
        "<cross-domain-policy>\n"
        '  <site-control permitted-cross-domain-policies="master-only"/>\n'
        f"  <allow-access-from domain={quoteattr(domain)} to-ports={quoteattr(to_ports)}"
        f"{secure_attr}/>\n"
        "</cross-domain-policy>\n"
    )


DEFAULT_POLICY = make_policy()


def policy_response(policy: str) -> bytes:
    return policy.encode("utf-8") + b"\x00"
