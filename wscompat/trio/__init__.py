"""The trio I/O layer: sockets, tasks, timeouts; everything else is in ``protocol``."""
