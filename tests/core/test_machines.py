"""Which opens and clicks are flagged as a machine's, and which are not."""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest

from service.core.machines import (
    APPLE_PRIVACY,
    DATA_CENTRE,
    EARLY_CLICK,
    IMAGE_PROXY,
    PREFETCH,
    SCANNER,
    in_networks,
    machine,
)
from service.core.tracking import CLICK, OPEN

CHROME = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0.0.0 Safari/537.36"
)
APPLE_MAIL = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko)"
)
OUTLOOK = "Microsoft Office/16.0 (Windows NT 10.0; Microsoft Outlook 16.0.17029; Pro)"
GMAIL_PROXY = (
    "Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)"
)
YAHOO_PROXY = "YahooMailProxy; https://help.yahoo.com/kb/yahoo-mail-proxy-SLN28749.html"
NETWORKS = (ipaddress.ip_network("40.94.0.0/16"), ipaddress.ip_network("2603:10a6::/32"))
ISSUED = 1_772_532_000


def judge(kind: str = OPEN, **overrides: Any) -> str | None:
    request: dict[str, Any] = {
        "kind": kind,
        "method": "GET",
        "user_agent": CHROME,
        "issued_at": ISSUED,
        "now": ISSUED + 3600,
        "early_click_seconds": 5.0,
        "networks": NETWORKS,
        "address": "203.0.113.9",
    }
    request.update(overrides)
    return machine(**request)


class TestPeople:
    @pytest.mark.parametrize("agent", [CHROME, APPLE_MAIL, OUTLOOK])
    @pytest.mark.parametrize("kind", [OPEN, CLICK])
    def test_mail_clients_and_browsers_are_not_flagged(self, agent: str, kind: str) -> None:
        assert judge(kind, user_agent=agent) is None

    def test_a_click_after_the_early_window(self) -> None:
        assert judge(CLICK, now=ISSUED + 5) is None

    def test_no_early_window(self) -> None:
        assert judge(CLICK, now=ISSUED, early_click_seconds=0) is None

    def test_an_open_soon_after_sending_is_a_person_reading(self) -> None:
        assert judge(OPEN, now=ISSUED + 1) is None


class TestMachines:
    @pytest.mark.parametrize("kind", [OPEN, CLICK])
    def test_head_is_a_prefetch(self, kind: str) -> None:
        assert judge(kind, method="HEAD") == PREFETCH

    @pytest.mark.parametrize("purpose", ["prefetch", "prefetch;prerender", "preview"])
    def test_a_purpose_header_says_prefetch(self, purpose: str) -> None:
        assert judge(CLICK, purposes=[purpose]) == PREFETCH

    def test_apple_mail_privacy_protection(self) -> None:
        assert judge(OPEN, user_agent="Mozilla/5.0") == APPLE_PRIVACY
        # A click with that bare agent is no proxy's: nothing a person clicks with either.
        assert judge(CLICK, user_agent="Mozilla/5.0") is None

    @pytest.mark.parametrize("agent", [GMAIL_PROXY, YAHOO_PROXY])
    def test_image_proxies(self, agent: str) -> None:
        assert judge(OPEN, user_agent=agent) == IMAGE_PROXY

    @pytest.mark.parametrize(
        "agent",
        [
            None,
            "",
            "   ",
            "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
            "Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)",
            "facebookexternalhit/1.1",
            "WhatsApp/2.23.20.0",
            "Barracuda Sentinel (EE)",
            "Mozilla/5.0 (compatible; proofpoint)",
            "python-requests/2.31.0",
            "curl/8.4.0",
            "Go-http-client/1.1",
            "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 HeadlessChrome/120.0",
            "Microsoft Office Existence Discovery",
        ],
    )
    def test_scanners_previews_and_scripts(self, agent: str | None) -> None:
        assert judge(CLICK, user_agent=agent) == SCANNER

    @pytest.mark.parametrize("address", ["40.94.12.7", "2603:10a6:20b::5", "::ffff:40.94.1.1"])
    def test_data_centre_addresses(self, address: str) -> None:
        assert judge(CLICK, address=address) == DATA_CENTRE

    def test_no_networks_no_data_centre(self) -> None:
        assert judge(CLICK, address="40.94.12.7", networks=()) is None

    @pytest.mark.parametrize("seconds", [0, 1, 4.9])
    def test_a_click_within_seconds_of_sending(self, seconds: float) -> None:
        assert judge(CLICK, now=ISSUED + seconds) == EARLY_CLICK

    def test_the_first_heuristic_that_matches_names_it(self) -> None:
        assert judge(CLICK, method="HEAD", user_agent="curl/8", now=ISSUED) == PREFETCH
        assert judge(CLICK, user_agent="curl/8", now=ISSUED) == SCANNER


def test_in_networks_ignores_what_is_not_an_address() -> None:
    assert not in_networks("testclient", NETWORKS)
    assert not in_networks("", NETWORKS)
