"""A free loopback port for a service a test starts (or a closed one for a test that wants nothing there).

`bind(port 0)` would return a port from the kernel's ephemeral range (32768-60999 on Linux), which
any process's next outgoing connection may take before the service binds it: a Ray head starts a
dozen processes that open connections in the seconds between choosing its ports and binding them,
and its client server then died on "Address already in use". So ports come from below the
ephemeral range and above Ray's worker ports (10002-19999), which nothing hands out on its own.
"""

from __future__ import annotations

import random
import socket

UNASSIGNED_PORTS = range(20000, 32768)


def free_port() -> int:
    """A loopback port nothing listens on now and the kernel does not hand out to others."""
    for port in random.sample(UNASSIGNED_PORTS, 500):
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free loopback port in {UNASSIGNED_PORTS.start}-{UNASSIGNED_PORTS.stop - 1} after 500 tries")
