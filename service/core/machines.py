"""Which opens and clicks a machine made (pure): flagged on the event, never dropped.

Mail is opened and clicked by more than people. Image proxies fetch the pixel on the
recipient's behalf (Gmail when the message is opened; Apple Mail Privacy Protection as soon as
it arrives, opened or not); security gateways and link previews fetch every link of a message
within seconds of its delivery. Each heuristic below names what it saw, in the event's
`machine` field; the event is stored and delivered all the same, and the subscriber decides
(docs/tracking.md lists them, with their false positives).
"""

from __future__ import annotations

import functools
import ipaddress
import re
from collections.abc import Sequence

from service.core.tracking import CLICK, OPEN

PREFETCH = "prefetch"
APPLE_PRIVACY = "apple_privacy"
IMAGE_PROXY = "image_proxy"
SCANNER = "scanner"
DATA_CENTRE = "data_centre"
EARLY_CLICK = "early_click"
MACHINE_KINDS = (PREFETCH, APPLE_PRIVACY, IMAGE_PROXY, SCANNER, DATA_CENTRE, EARLY_CLICK)

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

# Apple Mail Privacy Protection fetches remote content through Apple's proxies, which send this
# bare user agent and nothing else (Apple Mail itself sends a full WebKit one).
APPLE_PRIVACY_USER_AGENT = "Mozilla/5.0"
# Mail providers' image proxies: Gmail's (via ggpht.com GoogleImageProxy), Yahoo's.
_IMAGE_PROXY = re.compile(r"googleimageproxy|ggpht\.com|yahoomailproxy", re.IGNORECASE)
# Security gateways and link checkers, link previews, crawlers, HTTP libraries and headless
# browsers: nothing a person clicks with.
_SCANNER = re.compile(
    r"bot\b|crawler|spider|slurp|preview|scanner|linkcheck|validator"
    r"|facebookexternalhit|whatsapp|embedly"
    r"|barracuda|proofpoint|mimecast|ironport|messagelabs|symantec|trend ?micro|forcepoint"
    r"|sophos|fortinet|fortiguard|bitdefender|check ?point|zscaler|safelinks"
    r"|existence discovery|protocol discovery"
    r"|python|curl/|wget|go-http-client|java/|okhttp|axios|node-fetch|undici|libwww|"
    r"httpclient|http-client|aiohttp|httpx|ruby|php/|perl|headless|phantomjs|puppeteer"
    r"|playwright|selenium|lighthouse",
    re.IGNORECASE,
)
# Headers with which browsers announce a speculative fetch.
PURPOSE_HEADERS = ("sec-purpose", "purpose", "x-purpose", "x-moz")
_PREFETCH = re.compile(r"prefetch|preview|prerender", re.IGNORECASE)


def machine(
    *,
    kind: str,
    method: str,
    user_agent: str | None,
    purposes: Sequence[str] = (),
    address: str | None = None,
    networks: Sequence[Network] = (),
    issued_at: int,
    now: float,
    early_click_seconds: float = 0.0,
) -> str | None:
    """The heuristic that judged an open or click a machine's, or None: the first that
    matches, in the order of MACHINE_KINDS.

    `purposes` are the values of PURPOSE_HEADERS sent; `address` the client's IP address;
    `issued_at` when the link was made (unix seconds), `now` when it was followed."""
    if method == "HEAD" or any(_PREFETCH.search(value) for value in purposes):
        return PREFETCH
    judged = agent_kind(user_agent or "", kind == OPEN)
    if judged is not None:
        return judged
    if networks and address and in_networks(address, networks):
        return DATA_CENTRE
    if kind == CLICK and early_click_seconds > 0 and now - issued_at < early_click_seconds:
        return EARLY_CLICK
    return None


# Recipients' mail clients send few distinct agents, and matching one against _SCANNER costs
# tens of microseconds: a quarter of a tracking request's CPU before this cache.
@functools.lru_cache(maxsize=8192)
def agent_kind(user_agent: str, is_open: bool) -> str | None:
    """What the user agent alone says (APPLE_PRIVACY, IMAGE_PROXY, SCANNER), or None."""
    agent = user_agent.strip()
    if is_open and agent == APPLE_PRIVACY_USER_AGENT:
        return APPLE_PRIVACY
    if _IMAGE_PROXY.search(agent):
        return IMAGE_PROXY
    if not agent or _SCANNER.search(agent):
        return SCANNER
    return None


def in_networks(address: str, networks: Sequence[Network]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return any(ip.version == network.version and ip in network for network in networks)
