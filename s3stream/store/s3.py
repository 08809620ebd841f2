"""An object store on S3 (AWS S3, MinIO, moto's server) via botocore.

Path-style addressing, so any endpoint works without DNS tricks. Throttling,
5xx responses and timeouts are retried by botocore's "standard" retry mode
with exponential backoff and jitter; what still fails is an ObjectStoreError
marked transient, for the caller's own retry loop. Errors that retrying
cannot fix (AccessDenied, NoSuchBucket, bad credentials or parameters) are
marked not transient.

Conditional writes use If-None-Match: * (create if absent) and If-Match:
<ETag> (replace if the version matches); a 412, or a 404 on If-Match (the
key is gone), is PreconditionFailed. A 409 ConditionalRequestConflict (a
concurrent conditional write to the same key was in flight) is a transient
ObjectStoreError: the write did not happen, and a retry will get a definite
answer. botocore retries a conditional write whose answer was lost; when the
lost attempt took effect, the retry gets 412 from our own object. A 412 after
a retry is therefore settled by reading the object back: our exact bytes are
success (with their version), anything else PreconditionFailed. (A replace
that landed and was itself replaced before the read-back reads as
PreconditionFailed: superseded, as it would be a moment later anyway.)
A multipart completion whose answer was lost is settled the same way, and
also when the retry gets NoSuchUpload (S3's answer once the upload is
complete): the object is ours if its ETag is the one our parts make.

Some S3-compatible servers accept the conditional headers and ignore them;
the manifest refuses those at open (s3stream/conditional_probe.py) unless
the store is opened with ``conditional_writes="unenforced-single-writer"``,
in which case each conditional put is checked with a HEAD just before it is
sent: exact while there is one writer, a race between two.

The version is the ETag exactly as S3 returns it (with its quotes). An ETag
is derived from the content (MD5 for single-part uploads), so two writes of
identical bytes may share a version: callers whose compare-and-swap must
not suffer ABA keep a sequence number in the content (the manifest does).

Bodies below ``expect_continue_bytes`` (2 MiB) are sent with their headers,
without waiting for ``100 Continue`` (expect_continue.py). Objects above
``multipart_threshold`` (64 MiB: more than one upload of the
log cache writes, so those go up in one request) go up as multipart uploads,
parts sent concurrently, each by a thread at the priority of the thread
that asked for the put (a lowered compaction's parts stay lowered, and an
upload a remote acknowledgement waits for never waits for them:
wal/thread_priority.py); a failed upload is aborted. Objects given in parts
(as the uploader lays them out) are sent from the parts, never joined into
one buffer first (parts_body.py). Reads of a range
starting exactly at the end of an object return b""; past the end,
ObjectNotFound (base.py).
"""

from __future__ import annotations

import base64
import contextlib
import functools
import hashlib
import importlib.metadata
import threading
import zlib
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import Any, NamedTuple

import botocore.config
import botocore.exceptions
import botocore.loaders
import botocore.session
import urllib3.exceptions

from native.buffers import BytesLike
from s3stream.store.base import (
    ConditionalWrites,
    ObjectBuffer,
    ObjectData,
    ObjectInfo,
    ObjectNotFound,
    ObjectStore,
    ObjectStoreClosed,
    ObjectStoreError,
    PreconditionFailed,
    joined,
)
from s3stream.store.expect_continue import EXPECT_CONTINUE_BYTES, send_small_bodies_at_once
from s3stream.store.parts_body import PartsBody
from wal.thread_priority import own_priority

MiB = 1024 * 1024
_MIN_PART_SIZE = 5 * MiB  # S3's floor for every part but the last
_MAX_PARTS = 10_000
_PART_WORKERS = 4
_MAX_KEYS_PER_DELETE = 1000
_service_models: dict[str | None, botocore.loaders.Loader] = {}
"""The loader the stores' sessions read botocore's service models through,
by the data path it searches (AWS_DATA_PATH or a profile's data_path; None:
botocore's own models only): the first such store's, kept for every later
one, as it keeps what it parsed (botocore's Loader caches per instance).
About 12 MiB once S3's model is parsed, where each store held a copy of
its own."""
_service_models_lock = threading.Lock()
_NOT_IMPLEMENTED = {"NotImplemented", "MethodNotAllowed"}
"""What a server that lacks an operation (DeleteObjects, on some S3-compatible ones) answers."""
_BOTO_ERRORS = (
    botocore.exceptions.ClientError,
    botocore.exceptions.BotoCoreError,
    # What botocore lets through from urllib3 while a body is read (its
    # StreamingBody wraps only read timeouts and broken connections): a TLS
    # record failing its MAC, a body that cannot be decoded.
    urllib3.exceptions.HTTPError,
)
_NOT_FOUND = {"NoSuchKey", "NotFound", "404"}
_BUCKET_MISSING = {"NoSuchBucket", "NotFound", "404"}
_TRANSIENT_CODES = {
    "ConditionalRequestConflict",
    "InternalError",
    "OperationAborted",
    "RequestLimitExceeded",
    "RequestTimeout",
    "ServiceUnavailable",
    "SlowDown",
    "Throttling",
    "ThrottlingException",
}
# S3's codes for a request the store's address or credentials are wrong for.
_MISCONFIGURED_CODES = {
    "AccessDenied",
    "AllAccessDisabled",
    "AuthorizationHeaderMalformed",
    "ExpiredToken",
    "InvalidAccessKeyId",
    "InvalidBucketName",
    "InvalidToken",
    "NoSuchBucket",
    "PermanentRedirect",
    "SignatureDoesNotMatch",
}
# botocore's own errors that a retry cannot fix: configuration, credentials, arguments.
_PERMANENT_BOTOCORE = (
    botocore.exceptions.NoCredentialsError,
    botocore.exceptions.PartialCredentialsError,
    botocore.exceptions.ParamValidationError,
    botocore.exceptions.BaseEndpointResolverError,
    botocore.exceptions.ValidationError,
    botocore.exceptions.DataNotFoundError,
    botocore.exceptions.InvalidConfigError,
    botocore.exceptions.ProfileNotFound,
    botocore.exceptions.UnknownCredentialError,
)
# botocore's errors that point at the endpoint or the credentials.
_MISCONFIGURED_BOTOCORE = (
    botocore.exceptions.NoCredentialsError,
    botocore.exceptions.PartialCredentialsError,
    botocore.exceptions.UnknownCredentialError,
    botocore.exceptions.ProfileNotFound,
    botocore.exceptions.BaseEndpointResolverError,
    botocore.exceptions.EndpointConnectionError,
)


def _share_service_models(session: botocore.session.Session) -> None:
    """Has ``session`` read its service models through the process's loader
    for its data path: the first such session's own (as botocore makes it),
    kept for every later one. A session whose data path differs (custom or
    patched models) gets a loader of its own that searches it, as it did
    with a loader per session. A Loader is safe to share between threads:
    its cache is a dict filled check-then-set (two threads at once at worst
    parse a file twice), and client creation only reads what it returns
    (the one write, the extras merged into a model as it is loaded, puts
    the same values each time)."""
    data_path = session.get_config_variable("data_path")
    with _service_models_lock:
        shared = _service_models.get(data_path)
        if shared is None:
            _service_models[data_path] = session.get_component("data_loader")
        else:
            session.register_component("data_loader", shared)


USER_AGENT_NAME = "tidelog"


@functools.cache
def user_agent_version() -> str:
    """The installed distribution's version, for the User-Agent every
    request names (``tidelog/VERSION md/Botocore#...``, where boto3's
    sessions named ``Boto3/VERSION``): an object store's access log then
    tells tidelog's requests from other clients'. Read from the package's
    metadata, as s3stream may not import engine, where ``__version__`` is."""
    try:
        return importlib.metadata.version("tidelog")
    except importlib.metadata.PackageNotFoundError:  # run from a source tree not installed
        return "unknown"


class S3Connection(NamedTuple):
    """An S3 store's endpoint, region and credentials (None: the SDK's default)."""

    endpoint_url: str | None
    region: str | None
    access_key_id: str | None
    secret_access_key: str | None
    session_token: str | None

    def __repr__(self) -> str:  # the secrets stay out of logs and tracebacks
        return f"S3Connection(endpoint_url={self.endpoint_url!r}, region={self.region!r})"


class S3Store(ObjectStore):
    """Objects under ``prefix`` in an S3 bucket; keys are given without the prefix."""

    hedgeable = True

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        endpoint_url: str | None = None,
        region: str | None = None,
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
        multipart_threshold: int = 64 * MiB,
        part_size: int = 16 * MiB,
        max_attempts: int = 8,
        connect_timeout: float = 5.0,
        read_timeout: float = 30.0,
        max_pool_connections: int = 32,
        conditional_writes: ConditionalWrites | str = ConditionalWrites.ENFORCED,
        expect_continue_bytes: int = EXPECT_CONTINUE_BYTES,
    ) -> None:
        if part_size < _MIN_PART_SIZE:
            raise ValueError(f"S3 parts must be at least 5 MiB, not {part_size} bytes")
        if multipart_threshold < 0:
            raise ValueError(f"negative multipart_threshold {multipart_threshold}")
        self.bucket = bucket
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        self.url = f"s3://{bucket}/{self.prefix}"
        self.multipart_threshold = multipart_threshold
        self.part_size = part_size
        try:
            self.conditional_writes = ConditionalWrites(conditional_writes)
        except ValueError:
            known = ", ".join(mode.value for mode in ConditionalWrites)
            raise ValueError(
                f"unknown conditional_writes {conditional_writes!r} (known: {known})"
            ) from None
        # A session per store: botocore's default session is not thread-safe
        # to create clients on. Its service models come from the process's one
        # loader, which reads and parses botocore's JSON once: a loader per
        # session did it again for every store, 0.1 to 0.2 s of CPU each.
        self._session = botocore.session.get_session()
        _share_service_models(self._session)
        self._session.user_agent_name = USER_AGENT_NAME
        self._session.user_agent_version = user_agent_version()
        # Empty keys are no keys, as boto3's Session took them: the default
        # chain answers (a caller passing os.environ.get(name, "") means none).
        if access_key_id or secret_access_key:
            self._session.set_credentials(access_key_id, secret_access_key)
        if region is not None:
            self._session.set_config_variable("region", region)
        # As boto3's transfer manager does: when botocore checksums what it can
        # (AWS_REQUEST_CHECKSUM_CALCULATION, when_supported by default), uploads
        # carry CRC32s; multipart parts too, and the completion lists them.
        self._checksums = (
            self._session.get_config_variable("request_checksum_calculation") == "when_supported"
        )
        config = botocore.config.Config(
            # With a CRC32 on every upload, the payload goes unsigned
            # (UNSIGNED-PAYLOAD in the signature), as botocore itself does on
            # https when a checksum header is sent; over plain http it would
            # otherwise SHA-256 every byte of every upload, about a millisecond
            # of CPU per MiB. The request itself stays signed. Without the
            # CRC32s, the payload's signature is the only check on the way in.
            s3={
                "addressing_style": "path",
                **({"payload_signing_enabled": False} if self._checksums else {}),
            },
            retries={"mode": "standard", "max_attempts": max_attempts},
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            max_pool_connections=max_pool_connections,
            # Every object tidelog writes carries its own CRC32Cs (blocks, index,
            # footer, manifest records), checked by the reader in C; botocore's
            # own check of whole-object GETs would hash every byte again in Python.
            # Uploads keep their request checksums: S3 verifies those on arrival.
            response_checksum_validation="when_required",
        )
        self._endpoint_url = endpoint_url
        self._client: Any = self._session.create_client(
            "s3", endpoint_url=endpoint_url, config=config
        )
        send_small_bodies_at_once(self._client, expect_continue_bytes)
        self._deletes_many = True
        """Whether the server implements DeleteObjects (until it says not)."""
        self._parts: dict[int | None, ThreadPoolExecutor] = {}
        """The part senders, a pool per priority of the threads that put
        (None: where threads have no priority of their own)."""
        self._parts_lock = threading.Lock()
        self._closed = False
        """Set by close(), under ``_parts_lock``: no part senders after it,
        and no request (``_refuse_when_closed``)."""
        self._client.meta.events.register("before-parameter-build.s3", self._refuse_when_closed)

    def _key(self, key: str) -> str:
        return self.prefix + key

    def _refuse_when_closed(self, model: Any, params: dict[str, Any], **_: Any) -> None:
        """botocore's hook before each request: after close(), none is
        sent, whatever its size. botocore would send a closed client's
        requests on fresh connections, and a caller that closed the store
        under a stream store would see small requests served and large ones
        refused (their part senders are gone). An abort still goes: it ends
        an upload begun before the close, whose parts would linger, billed."""
        if self._closed and model.name != "AbortMultipartUpload":
            key = str(params.get("Key", params.get("Prefix", "")))
            raise ObjectStoreClosed(
                model.name, key.removeprefix(self.prefix), "the store is closed"
            )

    def connection(self) -> S3Connection:
        """Where and as whom this store connects, for another S3 client of the
        same bucket (the Iceberg tables' FileIO). Holds the secret key: never log it."""
        credentials = self._session.get_credentials()
        frozen = credentials.get_frozen_credentials() if credentials is not None else None
        return S3Connection(
            self._endpoint_url,
            self._session.get_config_variable("region"),
            frozen.access_key if frozen is not None else None,
            frozen.secret_key if frozen is not None else None,
            frozen.token if frozen is not None else None,
        )

    # -- writing ----------------------------------------------------------------

    def put(self, key: str, data: ObjectData) -> str:
        if isinstance(data, bytes | bytearray | memoryview):
            return self._put(key, data, {})
        parts = [memoryview(part).cast("B") for part in data]
        if sum(part.nbytes for part in parts) > self.multipart_threshold:
            return self._put(key, joined(parts), {})
        # Sent from the parts themselves: see parts_body.py.
        body = PartsBody(parts)
        with _errors("put", key):
            response = self._client.put_object(
                Bucket=self.bucket,
                Key=self._key(key),
                Body=body,
                ContentLength=body.size,
                **self._checksum_of(parts),
            )
        return str(response["ETag"])

    def put_if_absent(self, key: str, data: ObjectBuffer) -> str:
        if self._checks_conditions_itself() and self._version(key) is not None:
            raise PreconditionFailed(key, "exists (checked before the write)")
        return self._put(key, data, {"IfNoneMatch": "*"})

    def put_if_version(self, key: str, data: ObjectBuffer, version: str) -> str:
        if self._checks_conditions_itself() and not _same_etag(self._version(key), version):
            raise PreconditionFailed(key, f"version is not {version} (checked before the write)")
        return self._put(key, data, {"IfMatch": version})

    def _checks_conditions_itself(self) -> bool:
        # A server that ignores the headers still gets them (harmless), but
        # the condition is checked here first: exact for a single writer.
        return self.conditional_writes is ConditionalWrites.UNENFORCED_SINGLE_WRITER

    def _put(self, key: str, data: BytesLike, condition: dict[str, str]) -> str:
        view = memoryview(data)
        if not view.c_contiguous:
            view = memoryview(view.tobytes())
        view = view.cast("B")
        if view.nbytes > self.multipart_threshold:
            return self._put_multipart(key, view, condition)
        try:
            response = self._client.put_object(
                Bucket=self.bucket,
                Key=self._key(key),
                Body=data if isinstance(data, bytes) else view.tobytes(),
                **self._checksum_of([view]),
                **condition,
            )
        except _BOTO_ERRORS as error:
            return self._settle_conditional(error, key, view, condition)
        return str(response["ETag"])

    def _settle_completion(
        self,
        error: Exception,
        key: str,
        view: memoryview,
        condition: dict[str, str],
        parts: list[dict[str, Any]],
    ) -> str:
        """Like _settle_conditional, for a multipart completion; also settles
        NoSuchUpload after a retry (S3's answer to completing an upload it
        already completed, when the first answer was lost). The object is
        recognised by its multipart ETag, computed from the parts' ETags,
        before falling back to reading it back."""
        if _retried(error) and _code(error) in ("NoSuchUpload", "PreconditionFailed"):
            found = self._version(key)
            if found is not None and _same_etag(found, _multipart_etag(parts)):
                return found
        if _code(error) == "NoSuchUpload" and _retried(error):
            with contextlib.suppress(ObjectNotFound):
                data, version = self.get_versioned(key)
                if data == view:
                    return version
        return self._settle_conditional(error, key, view, condition)

    def _settle_conditional(
        self, error: Exception, key: str, view: memoryview, condition: dict[str, str]
    ) -> str:
        """The version of our own write if ``error`` is a 412 that botocore's
        retry of it earned; else raises ``error`` as the store's error.

        botocore retries a request whose answer was lost (a timeout, a reset,
        a 500 after the write). If the lost attempt was a conditional write
        that took effect, the retry finds the object it wrote itself and gets
        412. Reading the object back settles it: our exact bytes mean the
        write happened (the callers' contents carry a writer id and sequence
        number, so equal bytes are not someone else's). A 412 at the first
        attempt is a real conflict and is not read back.
        """
        failure = _translate(error, "put", key, condition)
        if isinstance(failure, PreconditionFailed) and _retried(error):
            try:
                found, version = self.get_versioned(key)
            except ObjectNotFound:
                raise failure from error
            if found == view:
                return version
        raise failure from error

    def _checksum_of(self, parts: Sequence[memoryview]) -> dict[str, str]:
        # Given, botocore need not compute it in 1 MiB chunks, holding the GIL
        # between them; zlib releases it for the whole buffer.
        if not self._checksums:
            return {}
        return {"ChecksumAlgorithm": "CRC32", "ChecksumCRC32": _crc32_header(parts)}

    def _put_multipart(self, key: str, view: memoryview, condition: dict[str, str]) -> str:
        pool = self._part_pool(key)  # before the upload starts: a closed store starts none
        part_size = max(self.part_size, -(-view.nbytes // _MAX_PARTS))
        checksum = {"ChecksumAlgorithm": "CRC32"} if self._checksums else {}
        with _errors("put", key):
            upload = self._client.create_multipart_upload(
                Bucket=self.bucket, Key=self._key(key), **checksum
            )
        upload_id = upload["UploadId"]

        def send(number: int, start: int) -> dict[str, Any]:
            with _errors("put", key):
                response = self._client.upload_part(
                    Bucket=self.bucket,
                    Key=self._key(key),
                    UploadId=upload_id,
                    PartNumber=number,
                    Body=view[start : start + part_size].tobytes(),
                    **checksum,
                )
            part = {"PartNumber": number, "ETag": response["ETag"]}
            if "ChecksumCRC32" in response:
                part["ChecksumCRC32"] = response["ChecksumCRC32"]
            return part

        sends: list[Future[dict[str, Any]]] = []
        try:
            for number, start in enumerate(range(0, view.nbytes, part_size), start=1):
                try:
                    sends.append(pool.submit(send, number, start))
                except RuntimeError as error:  # close() ended the pool after we took it
                    raise ObjectStoreClosed(
                        "put", key, "the store was closed during the put"
                    ) from error
            parts = [sent.result() for sent in sends]
            if "IfMatch" in condition and not _same_etag(self._version(key), condition["IfMatch"]):
                # S3 checks If-Match on completion itself, but some S3-compatible
                # servers (moto 5) ignore it there: refuse what we can see.
                raise PreconditionFailed(key, f"IfMatch {condition['IfMatch']}")
            try:
                response = self._client.complete_multipart_upload(
                    Bucket=self.bucket,
                    Key=self._key(key),
                    UploadId=upload_id,
                    MultipartUpload={"Parts": parts},
                    **condition,
                )
            except _BOTO_ERRORS as error:
                return self._settle_completion(error, key, view, condition, parts)
            return str(response["ETag"])
        except BaseException:
            for sent in sends:
                sent.cancel()
            wait(sends)  # a part landing after the abort would linger, billed, unlisted
            # If even the abort fails, the bucket's lifecycle rules must clean up.
            with contextlib.suppress(*_BOTO_ERRORS):
                self._client.abort_multipart_upload(
                    Bucket=self.bucket, Key=self._key(key), UploadId=upload_id
                )
            raise

    def _version(self, key: str) -> str | None:
        try:
            return self.head(key).version
        except ObjectNotFound:
            return None

    def _part_pool(self, key: str) -> ThreadPoolExecutor:
        """The part senders at the calling thread's priority. A pool starts
        its threads from the threads that submit to it, and a thread starts
        at its starter's priority and can never raise it again: one pool
        shared by all would keep the priority of whichever put came first,
        the lowered compactor's, say, for every remote acknowledgement's
        upload after it. Only threads of one priority submit to each pool.
        After close() none is made again: nothing would ever end its threads."""
        priority = own_priority()
        with self._parts_lock:
            if self._closed:
                raise ObjectStoreClosed("put", key, "the store is closed")
            pool = self._parts.get(priority)
            if pool is None:
                pool = self._parts[priority] = ThreadPoolExecutor(_PART_WORKERS, "s3-parts")
            return pool

    # -- reading ----------------------------------------------------------------

    def get(self, key: str, start: int = 0, end: int | None = None) -> bytes:
        if start < 0 or (end is not None and end < 0):
            raise ValueError(f"negative range [{start}, {end}) for {key!r}")
        if end is not None and end <= start:
            # HTTP cannot ask for no bytes; a HEAD still says whether the key exists.
            if start > self.head(key).size:
                raise ObjectNotFound(key)
            return b""
        request: dict[str, Any] = {"Bucket": self.bucket, "Key": self._key(key)}
        if start or end is not None:
            request["Range"] = f"bytes={start}-{'' if end is None else end - 1}"
        try:
            response = self._client.get_object(**request)
            body = bytes(response["Body"].read())
            if "Range" in request and "ContentRange" not in response:
                body = body[start:end]  # a server that ignores ranges sent it all
            return body
        except _BOTO_ERRORS as error:
            if _code(error) != "InvalidRange":
                raise _translate(error, "get", key) from error
        # S3 answers 416 to a range starting at or past the end, and to any
        # range of an empty object.
        size = self.head(key).size
        if start == size:
            return b""
        if start < size:  # replaced by a longer object since
            return self.get(key, start, end)
        raise ObjectNotFound(key)

    def get_versioned(self, key: str) -> tuple[bytes, str]:
        with _errors("get", key):
            response = self._client.get_object(Bucket=self.bucket, Key=self._key(key))
            return bytes(response["Body"].read()), str(response["ETag"])

    def head(self, key: str) -> ObjectInfo:
        with _errors("head", key):
            response = self._client.head_object(Bucket=self.bucket, Key=self._key(key))
        return ObjectInfo(key, int(response["ContentLength"]), str(response["ETag"]))

    def delete(self, key: str) -> None:
        with _errors("delete", key):
            self._client.delete_object(Bucket=self.bucket, Key=self._key(key))

    def delete_many(self, keys: Sequence[str]) -> None:
        """One DeleteObjects request per thousand keys (S3's most per request);
        a DELETE per key on a server that does not implement DeleteObjects."""
        for start in range(0, len(keys), _MAX_KEYS_PER_DELETE):
            chunk = keys[start : start + _MAX_KEYS_PER_DELETE]
            if not self._deletes_many:
                super().delete_many(chunk)
                continue
            try:
                response = self._client.delete_objects(
                    Bucket=self.bucket,
                    Delete={"Objects": [{"Key": self._key(k)} for k in chunk], "Quiet": True},
                )
            except _BOTO_ERRORS as error:
                if _code(error) not in _NOT_IMPLEMENTED:
                    raise _translate(error, "delete", chunk[0]) from error
                self._deletes_many = False
                super().delete_many(chunk)
                continue
            # A missing key is deleted already; S3 reports other failures per key.
            for failed in response.get("Errors", ()):
                code = str(failed.get("Code", ""))
                if code in _NOT_FOUND:
                    continue
                failure = ObjectStoreError("delete", str(failed.get("Key", "")), code)
                failure.transient = code in _TRANSIENT_CODES
                raise failure

    def list(self, prefix: str = "") -> list[ObjectInfo]:
        found = []
        with _errors("list", prefix):
            pages = self._client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=self._key(prefix)
            )
            for page in pages:
                for item in page.get("Contents", ()):
                    key = item["Key"][len(self.prefix) :]
                    found.append(ObjectInfo(key, int(item["Size"]), str(item["ETag"])))
        found.sort()
        return found

    # -- administration -----------------------------------------------------------

    def create_bucket_if_missing(self) -> None:
        """Creates the bucket unless it exists (for tests and ``tidelog serve``)."""
        try:
            self._client.head_bucket(Bucket=self.bucket)
            return
        except _BOTO_ERRORS as error:
            if _code(error) not in _BUCKET_MISSING:
                raise _translate(error, "head bucket", self.bucket) from error
        options: dict[str, Any] = {}
        region = self._client.meta.region_name
        if region and region not in ("us-east-1", "aws-global"):
            options["CreateBucketConfiguration"] = {"LocationConstraint": region}
        try:
            self._client.create_bucket(Bucket=self.bucket, **options)
        except _BOTO_ERRORS as error:
            if _code(error) != "BucketAlreadyOwnedByYou":  # else a racing creator won
                raise _translate(error, "create bucket", self.bucket) from error

    def close(self) -> None:
        with self._parts_lock:
            self._closed = True
            pools, self._parts = list(self._parts.values()), {}
        for pool in pools:
            pool.shutdown(wait=True)
        self._client.close()


def _crc32_header(parts: Sequence[memoryview]) -> str:
    """The CRC32 of the body (the parts, in order) as S3's x-amz-checksum-crc32 wants it."""
    crc = 0
    for part in parts:
        crc = zlib.crc32(part, crc)
    return base64.b64encode(crc.to_bytes(4, "big")).decode()


def _same_etag(found: str | None, expected: str) -> bool:
    # Servers differ on whether If-Match values carry the ETag's quotes.
    return found is not None and found.strip('"') == expected.strip('"')


def _multipart_etag(parts: list[dict[str, Any]]) -> str:
    """S3's ETag of a completed multipart upload: the MD5 of the parts' MD5s, and their count."""
    digests = b"".join(bytes.fromhex(str(part["ETag"]).strip('"')) for part in parts)
    return f'"{hashlib.md5(digests, usedforsecurity=False).hexdigest()}-{len(parts)}"'


def _retried(error: Exception) -> bool:
    """Whether botocore sent the request more than once before this answer."""
    if isinstance(error, botocore.exceptions.ClientError):
        return int(error.response.get("ResponseMetadata", {}).get("RetryAttempts", 0)) > 0
    return False


def _code(error: Exception) -> str:
    if isinstance(error, botocore.exceptions.ClientError):
        return str(error.response.get("Error", {}).get("Code", ""))
    return ""


@contextlib.contextmanager
def _errors(operation: str, key: str, condition: dict[str, str] | None = None) -> Iterator[None]:
    """Raises botocore's exceptions as the store's typed errors (see _translate)."""
    try:
        yield
    except _BOTO_ERRORS as error:
        raise _translate(error, operation, key, condition) from error


def _translate(
    error: Exception, operation: str, key: str, condition: dict[str, str] | None = None
) -> ObjectStoreError:
    """The store's error for a botocore exception.

    ``condition`` is given only for the request that carries it, so that a 404
    there (If-Match on a missing key) reads as a lost condition.
    """
    if isinstance(error, botocore.exceptions.ClientError):
        code = _code(error)
        status = int(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))
        if condition and (code in ("PreconditionFailed", "NoSuchKey") or status == 412):
            return PreconditionFailed(key, ", ".join(f"{k} {v}" for k, v in condition.items()))
        if code in _NOT_FOUND:
            return ObjectNotFound(key)
        failure = ObjectStoreError(operation, key, f"{code}: {error}")
        failure.transient = code in _TRANSIENT_CODES or status >= 500 or status in (408, 429)
        failure.misconfigured = code in _MISCONFIGURED_CODES or status in (301, 401, 403)
        return failure
    # Connection failures, timeouts and truncated or corrupt responses are
    # worth another try; a missing credential or a bad argument is not.
    failure = ObjectStoreError(operation, key, f"{type(error).__name__}: {error}")
    failure.transient = not isinstance(error, _PERMANENT_BOTOCORE)
    failure.misconfigured = isinstance(error, _MISCONFIGURED_BOTOCORE)
    return failure
