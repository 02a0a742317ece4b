"""Free loopback ports, for the daemons, proxies and NATS nodes the benches and tests start."""

from __future__ import annotations

import socket


def free_ports(n: int) -> list[int]:
    """n distinct free ports: all sockets are held open together, so none is handed out twice."""
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def free_port() -> int:
    """One free port (asked of the kernel, released at once: a race only with other binders)."""
    return free_ports(1)[0]
