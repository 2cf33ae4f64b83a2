"""Request bodies: bounded reads and JSON parsing that refuses junk with a 400 (or, for
an endpoint that authenticates later, with whatever the caller chooses)."""

from __future__ import annotations

import json
from typing import Any

from fastapi import Request

from deployments.receiver.errors import Refused

MAX_DEPTH = 32


async def read_body(request: Request, limit: int) -> bytes:
    """The raw body, refused with 413 past ``limit`` bytes (before reading it all)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise Refused(413, f"request body over {limit} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise Refused(413, f"request body over {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def within_depth(value: Any, limit: int = MAX_DEPTH) -> bool:
    """True when objects/arrays nest at most ``limit`` levels (iterative: no recursion)."""
    if not isinstance(value, dict | list):
        return True
    stack = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        for child in node.values() if isinstance(node, dict) else node:
            if isinstance(child, dict | list):
                if depth >= limit:
                    return False
                stack.append((child, depth + 1))
    return True


def parse_json(body: bytes, *, require_object: bool = True) -> Any:
    """The body as JSON: Refused(400) when it is not JSON, nests deeper than
    ``MAX_DEPTH``, or (``require_object``) is not a JSON object."""
    try:
        value = json.loads(body)
    except RecursionError:
        raise Refused(400, f"body nests deeper than {MAX_DEPTH} levels") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise Refused(400, f"body is not valid JSON: {exc.__class__.__name__}") from None
    if not within_depth(value):
        raise Refused(400, f"body nests deeper than {MAX_DEPTH} levels")
    if require_object and not isinstance(value, dict):
        raise Refused(400, "body must be a JSON object")
    return value
