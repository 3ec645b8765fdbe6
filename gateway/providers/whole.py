"""Answers read whole by the transport: the mark a call carries, and the httpx response it gets.

A JSON answer is always wanted whole, yet httpx hands every transport's answer over as a stream
that ``Response.aread()`` then pulls through three async-generator layers (``aiter_bytes``,
``aiter_raw``, the transport's own), one hop each per read. A request marked ``READ_WHOLE``
(``UpstreamClient.send`` marks the calls it does not stream) is answered by the gateway's
transports with its body already read, handed over as read: ``httpx.Response(content=...)`` would
run the body through those layers once more (25 us against 5 us). Other transports (tests' mocks)
ignore the mark and are read the usual way.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

import httpx

READ_WHOLE: Final = "gateway.read_whole"
# what httpx's own transports report in a response's extensions
HTTP_11: Final = {"http_version": b"HTTP/1.1"}


def whole_response(
    status: int,
    headers: httpx.Headers | Sequence[tuple[bytes, bytes]],
    body: bytes,
    request: httpx.Request,
) -> httpx.Response:
    """The httpx answer of a body read whole, in the state ``Response.read()`` leaves.

    httpx decodes a content coding on its read, so a coded body still takes that way; an uncoded
    one is set as read (the four attributes ``read()`` sets; httpx is pinned, and the transports'
    tests read such answers through httpx's public API).
    """
    response = httpx.Response(
        status,
        headers=headers,
        stream=httpx.ByteStream(body),
        request=request,
        extensions=HTTP_11,
    )
    if response.headers.get("Content-Encoding", "identity").strip().lower() != "identity":
        response.read()
        return response
    response._content = body
    response._num_bytes_downloaded = len(body)
    response.is_stream_consumed = True
    response.is_closed = True
    return response
