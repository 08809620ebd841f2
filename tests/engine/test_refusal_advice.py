"""An open the object store refused is described with advice that fits
the error: check the URL, endpoint and credentials only when the error
points at them (denied access, no such bucket, bad credentials, an
endpoint that cannot be reached); a timeout or a 5xx is said to be one
that may pass, and other errors are said as they are."""

from __future__ import annotations

import errno

import botocore.exceptions
import pytest

from engine.refusal import describe
from s3stream.store import ObjectStoreError
from s3stream.store.local import _store_error
from s3stream.store.s3 import _translate

ADVICE = "Check its URL, endpoint and credentials"
MAY_PASS = "start again once the store answers"


def client_error(code: str, status: int) -> botocore.exceptions.ClientError:
    response = {"Error": {"Code": code}, "ResponseMetadata": {"HTTPStatusCode": status}}
    return botocore.exceptions.ClientError(response, "GetObject")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "error",
    [
        client_error("AccessDenied", 403),
        client_error("InvalidAccessKeyId", 403),
        client_error("SignatureDoesNotMatch", 403),
        client_error("NoSuchBucket", 404),
        botocore.exceptions.NoCredentialsError(),
        botocore.exceptions.EndpointConnectionError(endpoint_url="http://127.0.0.1:1"),
    ],
    ids=["access-denied", "bad-key", "bad-secret", "no-bucket", "no-credentials", "no-endpoint"],
)
def test_s3_errors_pointing_at_the_address_or_credentials_get_the_advice(
    error: Exception,
) -> None:
    translated = _translate(error, "get", "manifest/log/1")
    assert translated.misconfigured
    assert ADVICE in describe(translated, "/data")


@pytest.mark.parametrize(
    "error",
    [
        client_error("SlowDown", 503),
        client_error("InternalError", 500),
        client_error("RequestTimeout", 400),
        botocore.exceptions.ReadTimeoutError(endpoint_url="http://127.0.0.1:1"),
        botocore.exceptions.ConnectionClosedError(endpoint_url="http://127.0.0.1:1"),
    ],
    ids=["slow-down", "internal-error", "request-timeout", "read-timeout", "connection-closed"],
)
def test_transient_s3_errors_are_said_to_may_pass_without_the_advice(error: Exception) -> None:
    translated = _translate(error, "get", "manifest/log/1")
    assert translated.transient and not translated.misconfigured
    described = describe(translated, "/data")
    assert ADVICE not in described and MAY_PASS in described
    assert str(translated) in described


def test_local_store_errors_get_the_advice_only_for_the_directorys_permissions() -> None:
    denied = _store_error("put", "k", OSError(errno.EACCES, "Permission denied", "/bucket/k"))
    full = _store_error("put", "k", OSError(errno.ENOSPC, "No space left on device", "/b/k"))
    failed_read = _store_error("get", "k", OSError(errno.EIO, "Input/output error", "/b/k"))
    assert ADVICE in describe(denied, "/data")
    assert ADVICE not in describe(full, "/data") and MAY_PASS not in describe(full, "/data")
    assert MAY_PASS in describe(failed_read, "/data")
    assert ADVICE not in describe(failed_read, "/data")


def test_an_error_of_no_known_cause_is_said_as_it_is() -> None:
    unknown = ObjectStoreError("get", "k", "something odd")
    unknown.transient = False
    assert describe(unknown, "/data") == (
        "the object store failed while opening /data: get 'k': something odd"
    )
