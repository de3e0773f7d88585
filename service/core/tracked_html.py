"""Tracking a message's HTML in one pass (pure): links replaced, the pixel added, nothing else.

The HTML is read with the standard library's parser (`html.parser`), which never fails, and
changed only where it must be: an href's value is replaced in place (the rest of the tag, its
quoting and spacing, and everything between tags stay byte for byte), the pixel goes before the
last `</body>` (or at the end). What is changed:

- `<a>`, `<area>` and Outlook's `<v:roundrect>` whose href is an absolute http(s) URL: the
  tracked URL (`track`). Left alone: `mailto:`, `tel:`, `#anchors`, relative URLs, links that
  are ours already (the unsubscribe URL among them) and links that cannot be tracked.
- An href of `{{unsubscribe_url}}`: the unsubscribe URL, never wrapped.
- Inside Outlook's conditional comments (`<!--[if mso]>…<![endif]-->`, where VML buttons
  live) the same, recursively; other comments, `<script>` and `<style>` are left alone.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from html.parser import HTMLParser

UNSUBSCRIBE_PLACEHOLDER = re.compile(r"\{\{\s*unsubscribe_url\s*\}\}")
LINK_TAGS = frozenset({"a", "area", "v:roundrect"})
PIXEL = '<img src="{url}" width="1" height="1" alt="" style="border:0;width:1px;height:1px" />'
# The expressions html.parser reads a start tag with (CPython's tagfind_tolerant and
# attrfind_tolerant), so that the span found here is the attribute the parser reported; a
# value that does not read back the same is left alone.
_TAG_NAME = re.compile(r"<([a-zA-Z][^\t\n\r\f />\x00]*)(?:\s|/(?!>))*")
_ATTRIBUTE = re.compile(
    r"((?<=['\"\s/])[^\s/>][^\s/=>]*)(\s*=+\s*('[^']*'|\"[^\"]*\"|(?!['\"])[^>\s]*))?(?:\s|/(?!>))*"
)
_HTTP = re.compile(r"https?://", re.IGNORECASE)


@dataclass
class Rewritten:
    html: str
    # Each link tracked: as it was (unescaped, trimmed) → its tracked URL.
    links: dict[str, str] = field(default_factory=dict)


def rewrite(
    source: str,
    *,
    track: Callable[[str], str | None] | None,
    unsubscribe_url: str,
    pixel_url: str | None,
) -> Rewritten:
    """`source` with its links tracked (`track(url)` → the tracked URL, or None to leave the
    link; None: no link tracked), `{{unsubscribe_url}}` hrefs replaced, and the pixel added
    (`pixel_url` None: not added)."""
    scan = _Scan(source)
    scan.feed(source)
    scan.close()
    result = Rewritten("")
    edits: list[tuple[int, int, str]] = []
    for start, end, value in scan.hrefs:
        replacement = _new_href(value.strip(), track, unsubscribe_url, result.links)
        if replacement is not None:
            edits.append((start, end, '"' + html.escape(replacement, quote=True) + '"'))
    for start, end in scan.conditional_comments:
        inner = rewrite(
            source[start:end], track=track, unsubscribe_url=unsubscribe_url, pixel_url=None
        )
        if inner.html != source[start:end]:
            edits.append((start, end, inner.html))
            result.links.update(inner.links)
    if pixel_url is not None:
        at = scan.body_end if scan.body_end is not None else len(source)
        edits.append((at, at, PIXEL.format(url=html.escape(pixel_url, quote=True))))
    parts: list[str] = []
    position = 0
    for start, end, text in sorted(edits, key=lambda edit: (edit[0], edit[1])):
        parts += [source[position:start], text]
        position = end
    parts.append(source[position:])
    result.html = "".join(parts)
    return result


def _new_href(
    value: str,
    track: Callable[[str], str | None] | None,
    unsubscribe_url: str,
    links: dict[str, str],
) -> str | None:
    if UNSUBSCRIBE_PLACEHOLDER.fullmatch(value):
        return unsubscribe_url
    if track is None or not _HTTP.match(value):
        return None
    tracked = links.get(value) or track(value)
    if tracked is not None:
        links[value] = tracked
    return tracked


class _Scan(HTMLParser):
    """Finds where the href values, Outlook's conditional comments and `</body>` are."""

    def __init__(self, source: str) -> None:
        super().__init__(convert_charrefs=True)
        self._source = source
        # html.parser counts lines by "\n" and columns from the last one.
        self._line_starts = [0, *(m.end() for m in re.finditer("\n", source))]
        self.hrefs: list[tuple[int, int, str]] = []  # value span (quotes included), value
        self.conditional_comments: list[tuple[int, int]] = []  # their contents' spans
        self.body_end: int | None = None

    def _offset(self) -> int:
        line, column = self.getpos()
        return self._line_starts[line - 1] + column

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in LINK_TAGS:
            return
        value = next((v for name, v in attrs if name == "href"), None)
        raw = self.get_starttag_text()
        if value is None or raw is None:
            return
        start = self._offset()
        if self._source[start : start + len(raw)] != raw:
            return  # never expected; if it happens, the link is left alone
        span = _href_span(raw)
        if span is None or _attribute_value(raw[span[0] : span[1]]) != value:
            return
        self.hrefs.append((start + span[0], start + span[1], value))

    def handle_endtag(self, tag: str) -> None:
        if tag == "body":
            self.body_end = self._offset()

    def handle_comment(self, data: str) -> None:
        if not data.startswith("[if"):
            return
        start = self._offset() + len("<!--")
        if self._source[start : start + len(data)] == data:
            self.conditional_comments.append((start, start + len(data)))


def _href_span(raw_tag: str) -> tuple[int, int] | None:
    """Where the first href's value (with its quotes) is in a start tag's text."""
    name = _TAG_NAME.match(raw_tag)
    if name is None:
        return None
    position = name.end()
    while position < len(raw_tag):
        match = _ATTRIBUTE.match(raw_tag, position)
        if match is None or match.end() == position:
            return None
        if match[1].lower() == "href":
            return match.span(3) if match[2] and match[3] else None
        position = match.end()
    return None


def _attribute_value(raw: str) -> str:
    if raw[:1] == raw[-1:] and raw[:1] in ("'", '"') and len(raw) >= 2:
        raw = raw[1:-1]
    return html.unescape(raw) if raw else raw
