"""Abuse limits that need state: per-client token buckets and who the client is.

Pure logic with an explicit clock, so it tests without a server; the HTTP layer asks
`ClientIdentity.key` who is calling and `RateLimiter.take` whether they may.
"""

from __future__ import annotations

import ipaddress
import math
import time
from collections import OrderedDict

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(values: list[str], what: str) -> list[Network]:
    """CIDRs or bare addresses; ValueError naming the bad one."""
    out = []
    for v in values:
        try:
            out.append(ipaddress.ip_network(v.strip(), strict=False))
        except ValueError:
            raise ValueError(f"{what}: not an address or network: {v!r}") from None
    return out


def parse_address(text: str | None) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """An address from a peer or a forwarded hop; proxies may add a port ("1.2.3.4:5555",
    "[2001:db8::1]:443") or brackets."""
    if not text:
        return None
    text = text.strip()
    if text.startswith("["):
        text = text[1 : text.find("]")] if "]" in text else text[1:]
    elif text.count(":") == 1:
        text = text.split(":", 1)[0]
    try:
        addr = ipaddress.ip_address(text)
    except ValueError:
        return None
    mapped = getattr(addr, "ipv4_mapped", None)
    return mapped or addr


class ClientIdentity:
    """The address a request is charged to.

    Behind a reverse proxy every request comes from the proxy, so when the peer is a trusted
    proxy the client is the right-most X-Forwarded-For address that is not itself a trusted
    proxy (the left part of that header is whatever the client claimed, so it is never used).
    """

    def __init__(self, exempt: list[Network], trusted_proxies: list[Network]) -> None:
        self.exempt = exempt
        self.trusted = trusted_proxies

    def _trusted(self, addr: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
        return any(addr in net for net in self.trusted)

    def client(self, remote: str | None, forwarded_for: str | None) -> str:
        """The client's address, or the raw text of a forwarded hop nobody can parse."""
        addr = parse_address(remote)
        if addr is None:
            return remote or "unknown"
        if forwarded_for and self.trusted and self._trusted(addr):
            for hop in reversed(forwarded_for.split(",")):
                hop_addr = parse_address(hop)
                if hop_addr is None:
                    # Unreadable, yet the proxy passed it on: charge that text itself, never
                    # the (often exempt) proxy, and never anything left of it.
                    return "hop:" + hop.strip()[:64]
                addr = hop_addr
                if not self._trusted(hop_addr):
                    break
        return str(addr)

    def key(self, remote: str | None, forwarded_for: str | None) -> str | None:
        """The rate-limit key, or None for an exempt client."""
        who = self.client(remote, forwarded_for)
        addr = parse_address(who)
        if addr is not None and any(addr in net for net in self.exempt):
            return None
        return who


class RateLimiter:
    """One token bucket per client: `rate` tokens a second, at most `burst` saved up.

    Memory is bounded: at most `max_clients` buckets, least recently used dropped first (a
    dropped client starts again with a full bucket, which only ever errs towards letting in).
    """

    def __init__(self, rate: float, burst: float, max_clients: int = 100_000) -> None:
        self.rate = rate
        self.burst = max(burst, 1.0)
        self.max_clients = max_clients
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    @property
    def enabled(self) -> bool:
        return self.rate > 0

    def take(self, key: str, cost: float = 1.0, now: float | None = None) -> float:
        """Charge `cost` tokens; 0.0 if allowed, else the seconds until it would be."""
        if not self.enabled:
            return 0.0
        now = time.monotonic() if now is None else now
        buckets = self._buckets
        tokens, at = buckets.pop(key, (self.burst, now))
        tokens = min(self.burst, tokens + (now - at) * self.rate)
        cost = min(cost, self.burst)  # a request bigger than the burst can still pass, alone
        if tokens >= cost:
            buckets[key] = (tokens - cost, now)
            wait = 0.0
        else:
            buckets[key] = (tokens, now)
            wait = (cost - tokens) / self.rate
        while len(buckets) > self.max_clients:
            buckets.popitem(last=False)
        return wait

    def __len__(self) -> int:
        return len(self._buckets)


def retry_after(wait: float) -> str:
    """Retry-After in whole seconds, never 0 (clients treat 0 as "now" and hammer)."""
    return str(max(1, math.ceil(wait)))
