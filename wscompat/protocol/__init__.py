"""The sans-I/O core: bytes in, events and bytes out.

Nothing here touches a socket, a clock, TLS or trio (``tests/protocol/test_layers.py``
keeps it so): the trio layer, the offline vector checker and any other I/O layer drive
the same objects.
"""
