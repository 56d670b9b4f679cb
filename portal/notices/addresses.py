"""Which addresses a webhook may reach, and resolving a webhook's host once.

A webhook URL is the user's to choose, so without a check a worker would post wherever it is told:
the portal's own host (``/metrics``, Redis), the company's internal services, a cloud's metadata
address (SSRF). So the URL's host is resolved the way the connection resolves it
(``getaddrinfo``, which also reads ``127.1``, ``0x7f000001``, ``0177.0.0.1``, ``2130706433`` and
``0`` as IPv4 addresses), and every address it resolves to must be public: loopback, private,
link-local, shared (100.64.0.0/10), reserved, documentation and unspecified addresses are
refused, multicast and broadcast too, and an IPv4 address carried inside an IPv6 one
(``::ffff:a.b.c.d``, 6to4, Teredo, NAT64) is judged by the IPv4 address it carries. A host
written with %-escapes is refused outright: nothing resolves it, and parsers disagree on it.

``WEBHOOK_ALLOWED_NETWORKS`` (CIDRs) lets a company reach receivers on its own network: an
address inside one of them is accepted, except unspecified, multicast and broadcast addresses,
which are no receiver anywhere.

The connection then goes to the very addresses checked here (``transport``), never to a second
lookup of the name, so a name that resolves elsewhere a moment later (DNS rebinding) gains nothing.
"""
import ipaddress
import re
import socket
import threading
from functools import lru_cache

# NAT64's well-known prefix: the last 32 bits are the IPv4 address reached.
NAT64 = ipaddress.ip_network("64:ff9b::/96")
BROADCAST = ipaddress.ip_address("255.255.255.255")


class Refused(Exception):
    """The host is not one webhooks may reach; the message says why, for the server log."""


class Unresolved(Exception):
    """The host name did not resolve (in time); the message says why, for the server log."""


def parse_networks(text):
    """The networks of a ``WEBHOOK_ALLOWED_NETWORKS`` value: CIDRs (or single addresses), comma
    or space separated. ValueError names the first one that is not."""
    networks = []
    for part in re.split(r"[\s,]+", (text or "").strip()):
        if not part:
            continue
        try:
            networks.append(ipaddress.ip_network(part, strict=False))
        except ValueError:
            raise ValueError(f"{part!r} is not a network such as 10.0.0.0/8 or fd00::/8") from None
    return tuple(networks)


@lru_cache(maxsize=8)
def _parsed(text):
    return parse_networks(text)


def allowed_networks(config):
    """The networks the configuration allows besides public addresses."""
    return _parsed(config.get("WEBHOOK_ALLOWED_NETWORKS") or "")


def _carried_ipv4(address):
    """The IPv4 address an IPv6 address carries (mapped, 6to4, Teredo client, NAT64), or None."""
    if address.version != 6:
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    if address in NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def refusal(address, allowed=()):
    """Why a webhook may not reach ``address`` (an ipaddress address), or None when it may."""
    carried = _carried_ipv4(address)
    judged = [address] if carried is None else [address, carried]
    for each in judged:
        if each.is_unspecified or each.is_multicast or each == BROADCAST:
            return f"{address} is no receiver's address"
    if any(each in network for each in judged for network in allowed):
        return None
    for each in judged:
        if not each.is_global or each.is_reserved:
            return f"{address} is not a public address"
    return None


def resolve(host, port, seconds):
    """``getaddrinfo(host, port)`` for a TCP connection, within ``seconds``: its ``(family,
    sockaddr)`` pairs. The lookup runs in a thread of its own because a resolver can take longer
    than any deadline and cannot be interrupted; one that overruns is left to finish alone."""
    found = {}

    def lookup():
        try:
            found["infos"] = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                                proto=socket.IPPROTO_TCP)
        except (OSError, UnicodeError) as exc:
            found["error"] = exc

    thread = threading.Thread(target=lookup, name="webhook-resolve", daemon=True)
    thread.start()
    thread.join(max(0.0, seconds))
    if thread.is_alive():
        raise Unresolved(f"{host} did not resolve within {seconds:.1f} s")
    if "error" in found:
        raise Unresolved(f"{host} did not resolve: {found['error']}")
    pairs = [(family, sockaddr) for family, _type, _proto, _name, sockaddr in found["infos"]
             if family in (socket.AF_INET, socket.AF_INET6)]
    if not pairs:
        raise Unresolved(f"{host} has no IPv4 or IPv6 address")
    return pairs


def checked(host, port, allowed, seconds):
    """The ``(family, sockaddr)`` pairs ``host`` resolves to, every one of them allowed. Refused
    when the host or any of its addresses may not be reached (the connection could have used any
    of them), Unresolved when it does not resolve within ``seconds``."""
    if not host or "%" in host:
        raise Refused(f"{host!r} is written with %-escapes")
    pairs = resolve(host, port, seconds)
    for _family, sockaddr in pairs:
        try:
            address = ipaddress.ip_address(sockaddr[0])
        except ValueError:
            raise Refused(f"{host} resolves to {sockaddr[0]!r}, no plain address") from None
        why = refusal(address, allowed)
        if why:
            raise Refused(f"{host} resolves to {address}: {why}")
    return pairs
