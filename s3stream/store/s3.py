"""An object store on S3 (AWS S3, MinIO, moto's server) via boto3.

Path-style addressing, so any endpoint works without DNS tricks. Throttling,
5xx responses and timeouts are retried by botocore's "standard" retry mode
with exponential backoff and jitter; what still fails is an ObjectStoreError
marked transient, for the caller's own retry loop. Conditional writes use
If-None-Match: * (create if absent) and If-Match: <ETag> (replace if the
version matches). Objects above ``multipart_threshold`` go up as concurrent
multipart uploads.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

import boto3
import botocore.config
import botocore.exceptions

from s3stream.store.base import (
    BytesLike,
    ObjectInfo,
    ObjectNotFound,
    ObjectStore,
    ObjectStoreError,
    PreconditionFailed,
)

MiB = 1024 * 1024
_NOT_FOUND = {"NoSuchKey", "404", "NotFound"}
_PRECONDITION = {"PreconditionFailed", "412"}
# Retrying these cannot help: the request itself, the bucket or the credentials are wrong.
_PERMANENT = {
    "AccessDenied",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "NoSuchBucket",
    "InvalidBucketName",
    "InvalidArgument",
    "InvalidRequest",
    "EntityTooLarge",
    "403",
    "400",
}


class S3Store(ObjectStore):
    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        endpoint_url: str | None = None,
        region: str | None = None,
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
        multipart_threshold: int = 16 * MiB,
        part_size: int = 8 * MiB,
        max_attempts: int = 8,
        connect_timeout: float = 5.0,
        read_timeout: float = 30.0,
        max_pool_connections: int = 32,
    ) -> None:
        if part_size < 5 * MiB:
            raise ValueError("S3 parts must be at least 5 MiB")
        self.bucket = bucket
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        self.url = f"s3://{bucket}/{self.prefix}"
        self.multipart_threshold = multipart_threshold
        self.part_size = part_size
        config = botocore.config.Config(
            s3={"addressing_style": "path"},
            retries={"mode": "standard", "max_attempts": max_attempts},
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            max_pool_connections=max_pool_connections,
        )
        session = boto3.session.Session()
        self._client: Any = session.client(
            "s3",
            endpoint_url=endpoint_url,
            region_name=region,
            aws_access_key_id=access_key_id,
            aws_secret_access_key=secret_access_key,
            config=config,
        )
        self._parts: ThreadPoolExecutor | None = None
        self._parts_lock = threading.Lock()

    def _key(self, key: str) -> str:
        return self.prefix + key

    # -- writing ----------------------------------------------------------------

    def put(self, key: str, data: BytesLike) -> str:
        return self._put(key, data, {})

    def put_if_absent(self, key: str, data: BytesLike) -> str:
        return self._put(key, data, {"IfNoneMatch": "*"})

    def put_if_version(self, key: str, data: BytesLike, version: str) -> str:
        return self._put(key, data, {"IfMatch": version})

    def _put(self, key: str, data: BytesLike, condition: dict[str, str]) -> str:
        if len(data) > self.multipart_threshold:
            return self._put_multipart(key, data, condition)
        with _errors("put", key, condition):
            body = data if isinstance(data, bytes) else bytes(data)
            response = self._client.put_object(
                Bucket=self.bucket, Key=self._key(key), Body=body, **condition
            )
        return str(response["ETag"])

    def _put_multipart(self, key: str, data: BytesLike, condition: dict[str, str]) -> str:
        view = memoryview(data)
        with _errors("put", key, condition):
            upload = self._client.create_multipart_upload(Bucket=self.bucket, Key=self._key(key))
        upload_id = upload["UploadId"]
        try:
            starts = range(0, len(view), self.part_size)

            def send(number: int, start: int) -> dict[str, Any]:
                with _errors("put", key, condition):
                    part = self._client.upload_part(
                        Bucket=self.bucket,
                        Key=self._key(key),
                        UploadId=upload_id,
                        PartNumber=number,
                        Body=bytes(view[start : start + self.part_size]),
                    )
                return {"PartNumber": number, "ETag": part["ETag"]}

            pool = self._part_pool()
            parts = list(pool.map(send, range(1, len(starts) + 1), starts))
            with _errors("put", key, condition):
                response = self._client.complete_multipart_upload(
                    Bucket=self.bucket,
                    Key=self._key(key),
                    UploadId=upload_id,
                    MultipartUpload={"Parts": parts},
                    **condition,
                )
            return str(response["ETag"])
        except BaseException:
            # If even the abort fails, the bucket's lifecycle rules clean up.
            with contextlib.suppress(
                botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError
            ):
                self._client.abort_multipart_upload(
                    Bucket=self.bucket, Key=self._key(key), UploadId=upload_id
                )
            raise

    def _part_pool(self) -> ThreadPoolExecutor:
        with self._parts_lock:
            if self._parts is None:
                self._parts = ThreadPoolExecutor(4, "s3-parts")
            return self._parts

    # -- reading ----------------------------------------------------------------

    def get(self, key: str, start: int = 0, end: int | None = None) -> bytes:
        if end is not None and end <= start:
            return b""
        byte_range = f"bytes={start}-" + ("" if end is None else str(end - 1))
        request: dict[str, Any] = {"Bucket": self.bucket, "Key": self._key(key)}
        if start or end is not None:
            request["Range"] = byte_range
        try:
            with _errors("get", key):
                return bytes(self._client.get_object(**request)["Body"].read())
        except ObjectStoreError as error:
            if error.reason.startswith("InvalidRange"):
                return b""  # the range starts at or past the end
            raise

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
        with _errors("create bucket", self.bucket):
            try:
                self._client.head_bucket(Bucket=self.bucket)
                return
            except botocore.exceptions.ClientError as error:
                if _code(error) not in _NOT_FOUND | {"NoSuchBucket"}:
                    raise
            self._client.create_bucket(Bucket=self.bucket)

    def close(self) -> None:
        with self._parts_lock:
            if self._parts is not None:
                self._parts.shutdown(wait=True)
                self._parts = None
        self._client.close()


def _code(error: botocore.exceptions.ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


@contextmanager
def _errors(operation: str, key: str, condition: dict[str, str] | None = None) -> Iterator[None]:
    """Translates botocore's exceptions into the store's typed errors."""
    try:
        yield
    except botocore.exceptions.ClientError as error:
        code = _code(error)
        status = int(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))
        if code in _PRECONDITION or status == 412:
            raise PreconditionFailed(key, ", ".join(condition or {}) or "condition") from error
        if code in _NOT_FOUND or (status == 404 and code != "NoSuchBucket"):
            raise ObjectNotFound(key) from error
        failure = ObjectStoreError(operation, key, f"{code}: {error}")
        # 409 is S3's ConditionalRequestConflict: a concurrent conditional write; retry.
        failure.transient = code not in _PERMANENT and (
            status >= 500 or status in (0, 408, 409, 429) or code in ("SlowDown", "RequestTimeout")
        )
        raise failure from error
    except botocore.exceptions.BotoCoreError as error:
        # Connection failures, timeouts, truncated responses: worth another try.
        raise ObjectStoreError(operation, key, str(error)) from error
