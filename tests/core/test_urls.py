from __future__ import annotations

import pytest

from service.core.urls import UnsafeUrl, check_endpoint_url, private_host_reason


def check(url: str, *, allow_http: bool = False, allow_private: bool = False) -> str:
    return check_endpoint_url(url, allow_http=allow_http, allow_private=allow_private)


class TestCheckEndpointUrl:
    @pytest.mark.parametrize(
        "url",
        [
            "https://yourapp.com/hooks/email-events",
            "https://yourapp.com:8443/hooks?x=1",
            "https://8.8.8.8/hook",
            "https://[2001:4860:4860::8888]/hook",
            "https://bücher.example/hook",
        ],
    )
    def test_public_https_urls_are_returned_unchanged(self, url: str) -> None:
        assert check(url) == url

    @pytest.mark.parametrize(
        ("url", "message"),
        [
            ("yourapp.com/hooks", "absolute https"),
            ("/hooks", "absolute https"),
            ("ftp://yourapp.com/x", "absolute https"),
            ("javascript:alert(1)", "absolute https"),
            ("https://", "host"),
            ("https:///path", "host"),
            ("https://user:pw@yourapp.com/x", "credentials"),
            ("https://your app.com/x", "whitespace"),
            ("https://yourapp.com/\nx", "whitespace"),
            ("https://yourapp.com/" + "a" * 2048, "2048"),
        ],
    )
    def test_malformed_urls_are_refused(self, url: str, message: str) -> None:
        with pytest.raises(UnsafeUrl, match=message):
            check(url)

    @pytest.mark.parametrize(
        ("url", "message"),
        [
            # Invalid A-labels: httpx raises idna's UnicodeError when the host is decoded.
            ("https://xn--ls8h.la/", "not a valid URL"),
            ("https://xn--/", "not a valid URL"),
            ("https://xn--zz.com/", "not a valid URL"),
            ("https://xn--a-.com/", "not a valid URL"),
            # Percent-escapes would reach the resolver as a name: refused, never decoded.
            ("https://%31%32%37.0.0.1/", "percent-escapes"),
            ("https://127.0.0.1%2e/", "percent-escapes"),
            ("https://%/", "percent-escapes"),
            ("https://%zz/", "percent-escapes"),
            ("https://[fe80::1%25eth0]/", "percent-escapes"),
            ("https://example..com/", "empty label"),
            ("https://.example.com/", "empty label"),
            ("https://-a-.com/", "inner hyphens"),
            ("https://a-.example.com/", "inner hyphens"),
            ("https://a_b.example.com/", "inner hyphens"),
            ("https://" + "a" * 64 + ".example.com/", "longer than 63"),
            ("https://" + "a." * 127 + "com/", "253"),
            ("https://example.com:0/", "port"),
            ("https://example.com:99999/", "port"),
        ],
    )
    def test_malformed_hosts_and_ports_are_refused(self, url: str, message: str) -> None:
        with pytest.raises(UnsafeUrl, match=message):
            check(url)

    @pytest.mark.parametrize(
        "url",
        [
            "https://xn--bcher-kva.example/",  # the A-label of bücher.example
            "https://example.com./hook",  # a fully qualified name
            "https://a-b.c-d.example:1/",
            "https://example.com:65535/",
        ],
    )
    def test_well_formed_hosts_and_ports_pass(self, url: str) -> None:
        assert check(url) == url

    def test_http_needs_the_flag(self) -> None:
        with pytest.raises(UnsafeUrl, match="https"):
            check("http://yourapp.com/x")
        assert check("http://yourapp.com/x", allow_http=True) == "http://yourapp.com/x"

    @pytest.mark.parametrize(
        "url",
        [
            "https://localhost/x",
            "https://LOCALHOST./x",
            "https://api.localhost/x",
            "https://127.0.0.1/x",
            "https://127.1/x",
            "https://2130706433/x",
            "https://0x7f000001/x",
            "https://0.0.0.0/x",
            "https://10.0.0.1/x",
            "https://172.16.5.4/x",
            "https://192.168.1.1/x",
            "https://169.254.169.254/latest/meta-data/",
            "https://100.64.0.1/x",
            "https://224.0.0.1/x",
            "https://240.0.0.1/x",
            "https://255.255.255.255/x",
            "https://[::1]/x",
            "https://[::]/x",
            "https://[fe80::1]/x",
            "https://[fd00::1]/x",
            "https://[ff02::1]/x",
            "https://[::ffff:127.0.0.1]/x",
            "https://[::ffff:169.254.169.254]/x",
            "https://[64:ff9b::a9fe:a9fe]/x",
            "https://[2002:7f00:1::]/x",
        ],
    )
    def test_private_destinations_are_refused_unless_allowed(self, url: str) -> None:
        with pytest.raises(UnsafeUrl, match="not allowed"):
            check(url)
        assert check(url, allow_private=True) == url

    def test_metadata_address_is_named(self) -> None:
        reason = private_host_reason("169.254.169.254")
        assert reason is not None
        assert "metadata" in reason

    def test_names_are_not_resolved_here(self) -> None:
        # Resolution (and DNS rebinding) is the delivery-time check's job.
        assert private_host_reason("internal.example") is None
