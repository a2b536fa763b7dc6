"""Tools for testers and researchers: ``wscompat client`` and ``wscompat probe``.

``client`` talks to any WebSocket server as a client of one generation would, by hand
or from a script; ``probe`` asks a server, one connection per question, which
generations and extensions it speaks. Both drive the same sans-I/O
:class:`~wscompat.protocol.connection.ClientConnection` as the rest of wscompat, over
plain trio streams, so what they report is what wscompat's own client would see.
"""
