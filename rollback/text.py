"""Text from outside is data: escape it where it is shown.

Outside text is anything a caller or a payload chose: reasons, requesters, versions, ids,
service and alarm names. Each function returns one line, so no field can forge another
line of a message, and defangs URLs (``https[:]//``, ``www[.]``), so no viewer that
links bare URLs (Slack, GitHub-flavoured markdown) makes a link of them.

- ``slack_escape``: Slack mrkdwn, where only ``&``, ``<`` and ``>`` are special
  (``<...>`` is how mentions and links are written).
- ``markdown_escape``: markdown (artifacts, reports): HTML is entity-escaped, link,
  image, emphasis, code and table characters are backslash-escaped.
- ``log_safe``: log lines and terminal output: control characters shown as escapes,
  length bounded.
"""

from __future__ import annotations

import re
from typing import Any

LOG_LIMIT = 500

# C0/C1 controls, line/paragraph separators and bidi overrides: they break or disguise lines.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_WWW = re.compile(r"(?i)www\.")
_HTML = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;"})
# Characters that start links, images, emphasis, code, headings or split a table cell.
_MARKDOWN = re.compile(r"([\\`*_{}\[\]()#!|~])")
_LOG_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def has_control(text: str) -> bool:
    """True when ``text`` holds a control, line-separator or bidi character."""
    return _CONTROL.search(text) is not None


def _one_line(text: str) -> str:
    return _CONTROL.sub(" ", text)


def defang(text: str) -> str:
    """``https://x`` → ``https[:]//x``, ``www.x`` → ``www[.]x``: readable, not a link."""
    return _WWW.sub("www[.]", text.replace("://", "[:]//"))


def slack_escape(value: Any) -> str:
    """One line of outside text for Slack mrkdwn: no mention, no link, no entity."""
    return defang(_one_line(str(value))).translate(_HTML)


def markdown_escape(value: Any) -> str:
    """One line of outside text for markdown, inline or in a table cell: no HTML, no link,
    no image, no formatting, no cell split."""
    text = defang(_one_line(str(value))).translate(_HTML)
    return _MARKDOWN.sub(r"\\\1", text)


def log_safe(value: Any, limit: int = LOG_LIMIT) -> str:
    """Outside text for a log line or a terminal: control characters escaped (no forged
    lines, no terminal escape sequences), at most ``limit`` characters and an ellipsis."""
    text = _CONTROL.sub(
        lambda m: _LOG_ESCAPES.get(m.group(), f"\\u{ord(m.group()):04x}"), str(value)
    )
    return text if len(text) <= limit else text[:limit] + "…"
