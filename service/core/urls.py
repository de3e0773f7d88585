"""Registration-time safety checks for endpoint URLs (pure: no DNS, no I/O).

A URL is parsed the way the delivery client (httpx) will parse it, so the host we check is
the host we would connect to. Names are resolved and checked again at delivery time.
"""

from __future__ import annotations

import ipaddress
import re
import socket

import httpx

MAX_URL_LENGTH = 2048

_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_LDH = re.compile(r"[a-z0-9](?:[a-z0-9-]*[a-z0-9])?", re.IGNORECASE)
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
        # .host decodes an IDNA A-label (xn--…) and raises UnicodeError (idna.IDNAError) on
        # one that is not valid: asked here, so the failure is a 422, never a 500.
        host = parsed.host.rstrip(".").lower()
        port = parsed.port
    except (httpx.InvalidURL, UnicodeError) as exc:
        raise UnsafeUrl(f"url is not a valid URL: {exc}") from None
    if parsed.scheme not in ("https", "http"):
        raise UnsafeUrl("url must be an absolute https:// URL")
    if not host:
        raise UnsafeUrl("url must include a host")
    host_problem = _host_syntax_problem(parsed.raw_host.decode("ascii", "replace"))
    if host_problem:
        raise UnsafeUrl(f"url's host {host_problem}")
    if port is not None and not 1 <= port <= 65535:
        raise UnsafeUrl("url's port must be between 1 and 65535")
    if parsed.scheme == "http" and not allow_http:
        raise UnsafeUrl("url must use https:// (http:// is disabled on this server)")
    if parsed.userinfo:
        raise UnsafeUrl("url must not contain credentials; verify deliveries with the secret")
    if not allow_private:
        reason = private_host_reason(host)
        if reason:
            raise UnsafeUrl(f"url points to {reason}, which is not allowed")
    return url


def _host_syntax_problem(raw_host: str) -> str | None:
    """What is wrong with a host as sent on the wire (A-labels for IDNs), or None.

    Percent-escapes are refused outright rather than decoded: `%31%32%37.0.0.1` would reach
    the resolver as a name, and no real host needs them. Names must be dotted LDH labels
    (RFC 1123): no empty label, none longer than 63, none starting or ending with a hyphen."""
    if "%" in raw_host:
        return "must not contain percent-escapes"
    if ip_literal(raw_host) is not None:
        return None
    name = raw_host[:-1] if raw_host.endswith(".") else raw_host
    if len(name) > 253:
        return "must be at most 253 characters"
    for label in name.split("."):
        if not label:
            return "must not have an empty label (as in a..b or .a)"
        if len(label) > 63:
            return "must not have a label longer than 63 characters"
        if not _LDH.fullmatch(label):
            return f"must be made of letters, digits and inner hyphens (label {label!r} is not)"
    return None


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
