"""Small bodies go out with their headers: no ``Expect: 100-continue``.

botocore asks every S3 upload with a body to wait for ``100 Continue``
before sending it. That lets a server refuse a large body before it
travels, but costs every upload a round trip of its own before the body
moves: on a remote acknowledgement's path (an object's PUT, the
manifest's create-if-absent) that is two more round trips, each of which
can also stall (moto's server answered a tenth to a fifth of them about
10 ms late; docs/design/0018). The AWS SDKs for Kotlin and Go send the
header only from 2 MB up (``continueHeaderThresholdBytes``); below that,
a refused body costs less than the wait. The header is not signed
(botocore leaves ``expect`` out of SigV4's signed headers), so dropping
it before the request is sent changes nothing else.
"""

from __future__ import annotations

from typing import Any

EXPECT_CONTINUE_BYTES = 2 * 1024 * 1024
"""Bodies from this size up keep the header (the AWS SDKs' default threshold)."""


def send_small_bodies_at_once(client: Any, threshold: int = EXPECT_CONTINUE_BYTES) -> None:
    """Makes ``client`` (a botocore S3 client) send bodies below
    ``threshold`` bytes without waiting for ``100 Continue``. A body of
    unknown length keeps the header."""

    def drop_expect(request: Any, **_: Any) -> None:
        if "Expect" not in request.headers:
            return
        length = request.headers.get("Content-Length")
        if length is not None and int(length) < threshold:
            del request.headers["Expect"]

    client.meta.events.register("before-send.s3", drop_expect)
