"""Tracking a message's HTML: what is replaced, and that nothing else changes."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from service.core.tracked_html import PIXEL, rewrite

OURS = "https://t.example.com/t/"
UNSUBSCRIBE = "https://t.example.com/t/u/UNSUB"
PIXEL_URL = "https://t.example.com/t/o/OPEN"


def track(url: str) -> str | None:
    if url.startswith(OURS):
        return None
    return f"{OURS}c/{len(url)}"


def tracked(source: str, *, clicks: bool = True, opens: bool = True) -> str:
    return rewrite(
        source,
        track=track if clicks else None,
        unsubscribe_url=UNSUBSCRIBE,
        pixel_url=PIXEL_URL if opens else None,
    ).html


def pixel() -> str:
    return PIXEL.format(url=PIXEL_URL)


class TestLinks:
    def test_an_absolute_link_is_replaced_in_place(self) -> None:
        source = '<p>Hi <a class="btn" href="https://shop.example.com/spring">Shop</a></p>'
        result = rewrite(source, track=track, unsubscribe_url=UNSUBSCRIBE, pixel_url=None)
        assert (
            result.html == '<p>Hi <a class="btn" href="https://t.example.com/t/c/31">Shop</a></p>'
        )
        assert result.links == {"https://shop.example.com/spring": "https://t.example.com/t/c/31"}

    def test_every_quoting_and_case_of_the_attribute(self) -> None:
        source = (
            "<A HREF='https://a.example/'>a</A>"
            "<a  data-x=1   href = https://b.example/x >b</a>"
            '<a href="https://c.example/?a=1&amp;b=2">c</a>'
        )
        assert tracked(source, opens=False) == (
            '<A HREF="https://t.example.com/t/c/18">a</A>'
            '<a  data-x=1   href = "https://t.example.com/t/c/19" >b</a>'
            '<a href="https://t.example.com/t/c/26">c</a>'
        )

    def test_the_target_is_the_unescaped_url(self) -> None:
        source = '<a href="https://c.example/?a=1&amp;b=2">c</a>'
        links = rewrite(source, track=track, unsubscribe_url=UNSUBSCRIBE, pixel_url=None).links
        assert list(links) == ["https://c.example/?a=1&b=2"]

    def test_links_left_alone(self) -> None:
        source = (
            '<a href="mailto:help@example.com">m</a><a href="tel:+15550100">t</a>'
            '<a href="#top">top</a><a href="/relative">r</a><a name="x">n</a>'
            f'<a href="{OURS}c/already">ours</a><a href="">empty</a><a href>bare</a>'
            '<a href="javascript:void(0)">j</a>'
        )
        assert tracked(source, opens=False) == source

    def test_a_link_that_cannot_be_tracked_is_left(self) -> None:
        source = '<a href="https://x.example/a">a</a>'
        assert rewrite(
            source, track=lambda url: None, unsubscribe_url="u", pixel_url=None
        ).html == (source)

    def test_area_and_outlook_buttons(self) -> None:
        source = (
            '<map><area shape="rect" href="https://a.example/"></map>'
            '<!--[if mso]><v:roundrect xmlns:v="urn:schemas-microsoft-com:vml" '
            'href="https://b.example/" style="height:40px"><w:anchorlock/></v:roundrect>'
            "<![endif]-->"
        )
        assert tracked(source, opens=False) == (
            '<map><area shape="rect" href="https://t.example.com/t/c/18"></map>'
            '<!--[if mso]><v:roundrect xmlns:v="urn:schemas-microsoft-com:vml" '
            'href="https://t.example.com/t/c/18" style="height:40px"><w:anchorlock/></v:roundrect>'
            "<![endif]-->"
        )

    def test_comments_scripts_and_styles_are_left(self) -> None:
        source = (
            '<!-- <a href="https://a.example/">old</a> -->'
            "<script>var a = '<a href=\"https://b.example/\">';</script>"
            '<style>a[href="https://c.example/"] { color: red }</style>'
        )
        assert tracked(source, opens=False) == source

    def test_the_unsubscribe_placeholder(self) -> None:
        source = (
            '<a href="{{unsubscribe_url}}">Unsubscribe</a> <a href="{{ unsubscribe_url }}">u</a>'
        )
        assert tracked(source, opens=False) == (
            f'<a href="{UNSUBSCRIBE}">Unsubscribe</a> <a href="{UNSUBSCRIBE}">u</a>'
        )

    def test_the_placeholder_even_without_click_tracking(self) -> None:
        source = '<a href="https://a.example/">a</a><a href="{{unsubscribe_url}}">u</a>'
        assert tracked(source, clicks=False, opens=False) == (
            f'<a href="https://a.example/">a</a><a href="{UNSUBSCRIBE}">u</a>'
        )

    def test_rewriting_twice_wraps_nothing_twice(self) -> None:
        once = tracked('<body><a href="https://a.example/">a</a></body>')
        twice = rewrite(once, track=track, unsubscribe_url=UNSUBSCRIBE, pixel_url=None).html
        assert twice == once

    def test_the_same_link_twice_is_tracked_once(self) -> None:
        calls: list[str] = []

        def counting(url: str) -> str:
            calls.append(url)
            return "https://t.example.com/t/c/x"

        source = '<a href="https://a.example/">1</a><a href="https://a.example/">2</a>'
        rewrite(source, track=counting, unsubscribe_url=UNSUBSCRIBE, pixel_url=None)
        assert calls == ["https://a.example/"]


class TestPixel:
    def test_before_the_closing_body(self) -> None:
        source = "<html>\r\n<body>\r\n<p>Hi</p>\r\n</BODY>\r\n</html>"
        assert tracked(source) == f"<html>\r\n<body>\r\n<p>Hi</p>\r\n{pixel()}</BODY>\r\n</html>"

    def test_at_the_end_without_a_body(self) -> None:
        assert tracked("<p>Hi</p>") == f"<p>Hi</p>{pixel()}"

    def test_not_before_a_body_tag_in_a_comment(self) -> None:
        source = "<body><p>x</p></body><!-- </body> -->"
        assert tracked(source, clicks=False) == f"<body><p>x</p>{pixel()}</body><!-- </body> -->"

    def test_off(self) -> None:
        assert tracked("<body></body>", opens=False) == "<body></body>"


class TestNothingElseChanges:
    def test_broken_html_is_kept_as_it_is(self) -> None:
        source = (
            '<div><p>unclosed <b>bold <a href="https://a.example/">x</a> <i>< 3 &amp; &foo; </div'
        )
        result = tracked(source, opens=False)
        assert result == source.replace("https://a.example/", "https://t.example.com/t/c/18")

    def test_multiline_tags(self) -> None:
        source = 'x\n<a\n  class="b"\n  href="https://a.example/"\n>y</a>\n'
        assert tracked(source, opens=False) == source.replace(
            "https://a.example/", "https://t.example.com/t/c/18"
        )

    @given(st.text(alphabet=st.characters(blacklist_characters="<&"), max_size=300))
    def test_text_without_tags_only_gains_the_pixel(self, text: str) -> None:
        assert tracked(text) == text + pixel()

    @given(
        st.lists(
            st.sampled_from(
                [
                    "<p>",
                    "</p>",
                    "<br/>",
                    "text ",
                    "é ",
                    "&amp; ",
                    "<!-- c -->",
                    '<img src="x.png">',
                    "<a href='#a'>",
                    "</a>",
                    "\n",
                    "\r\n",
                    "<div\nclass=x>",
                ]
            ),
            max_size=40,
        )
    )
    def test_html_without_absolute_links_is_unchanged(self, parts: list[str]) -> None:
        source = "".join(parts)
        assert tracked(source, opens=False) == source
