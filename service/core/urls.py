"""Registration-time safety checks for endpoint URLs (pure: no DNS, no I/O).

A URL is parsed the way the delivery client (httpx) will parse it, so the host we check is
the host we would connect to. Names are resolved and checked again at delivery time.
"""

from __future__ import annotations

import ipaddress
import socket

import httpx

MAX_URL_LENGTH = 2048

_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_LOCAL_NAMES = ("localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback")


class UnsafeUrl(ValueError):
    """The URL is malformed or points somewhere we refuse to deliver to."""


def check_endpoint_url(url: str, *, allow_http: bool, allow_private: bool) -> str:
    """Return `url` unchanged if it is an acceptable endpoint, else raise `UnsafeUrl`."""
    if len(url) > MAX_URL_LENGTH:
        raise UnsafeUrl(f"url must be at most {MAX_URL_LENGTH} characters")
    if any(ch.isspace() or ord(ch) < 32 for ch in url):
        raise UnsafeUrl("url must not contain whitespace or control characters")
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as exc:
        raise UnsafeUrl(f"url is not a valid URL: {exc}") from None
    if parsed.scheme not in ("https", "http"):
        raise UnsafeUrl("url must be an absolute https:// URL")
    host = parsed.host.rstrip(".").lower()
    if not host:
        raise UnsafeUrl("url must include a host")
    if parsed.scheme == "http" and not allow_http:
        raise UnsafeUrl("url must use https:// (http:// is disabled on this server)")
    if parsed.userinfo:
        raise UnsafeUrl("url must not contain credentials; verify deliveries with the secret")
    if not allow_private:
        reason = private_host_reason(host)
        if reason:
            raise UnsafeUrl(f"url points to {reason}, which is not allowed")
    return url


def private_host_reason(host: str) -> str | None:
    """Why `host` (a name or an IP literal) is not a public destination, or None if it may be."""
    if host in _LOCAL_NAMES or host.endswith(".localhost"):
        return "localhost"
    address = ip_literal(host)
    if address is None:
        return None
    return non_public_reason(address)


def ip_literal(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The address `host` denotes if it is an IP literal in any form a resolver accepts."""
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        pass
    # inet_aton accepts the legacy shorthands ("127.1", "0x7f000001", "2130706433") that
    # getaddrinfo would happily connect to, so they count as literals too.
    if all(c in "0123456789abcdefx." for c in host):
        try:
            return ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            return None
    return None


def non_public_reason(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    """Why `address` is not a public unicast destination, or None if it is."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = address.ipv4_mapped or address.sixtofour
        if embedded is None and address in _NAT64:
            embedded = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if embedded is not None:
            return non_public_reason(embedded)
    if address.is_loopback:
        return "a loopback address"
    if address.is_link_local:
        return "a link-local address (this includes cloud metadata services)"
    if address.is_multicast:
        return "a multicast address"
    if address.is_unspecified:
        return "an unspecified address"
    if address.is_private:
        return "a private address"
    if address.is_reserved or not address.is_global:
        return "a reserved address"
    return None
