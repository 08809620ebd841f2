"""An object store in a local directory: the embedded default (``file:///path``).

Keys map to files under the root ("a/b" is root/a/b). A put writes a temp
file beside the target, fsyncs it, renames it over the target and fsyncs the
directory, so an object is either wholly there or not at all, even across a
power cut. Conditional puts serialise on a threading lock plus an flock on
root/.lock, so processes sharing the directory see one winner. A version is
the file's inode, mtime and size: a rename always brings a new inode.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from s3stream.store.base import (
    BytesLike,
    ObjectInfo,
    ObjectNotFound,
    ObjectStore,
    ObjectStoreError,
    PreconditionFailed,
)

_TEMP_PREFIX = ".tmp-"
_LOCK_NAME = ".lock"
# Errors that retrying will not fix: the store reports them as not transient.
_PERMANENT = {errno.EACCES, errno.EPERM, errno.ENOSPC, errno.EROFS, errno.EDQUOT, errno.ENOTDIR}


class LocalStore(ObjectStore):
    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = os.path.abspath(os.fspath(root))
        self.url = f"file://{self.root}"
        os.makedirs(self.root, exist_ok=True)
        self._lock = threading.Lock()

    # -- paths ----------------------------------------------------------------

    def _path(self, key: str) -> str:
        parts = key.split("/")
        if not key or key.startswith("/") or any(p in ("", ".", "..") for p in parts):
            raise ValueError(f"invalid object key {key!r}")
        if any(p.startswith(".") for p in parts):
            raise ValueError(f"object key parts may not start with '.': {key!r}")
        return os.path.join(self.root, *parts)

    # -- writing --------------------------------------------------------------

    def put(self, key: str, data: BytesLike) -> str:
        return self._write(key, data)

    def put_if_absent(self, key: str, data: BytesLike) -> str:
        path = self._path(key)
        with self._exclusive(key):
            if os.path.exists(path):
                raise PreconditionFailed(key, "exists")
            return self._write(key, data)

    def put_if_version(self, key: str, data: BytesLike, version: str) -> str:
        path = self._path(key)
        with self._exclusive(key):
            try:
                current = _version(os.stat(path))
            except FileNotFoundError:
                current = None
            if current != version:
                raise PreconditionFailed(key, f"version is not {version}")
            return self._write(key, data)

    def _write(self, key: str, data: BytesLike) -> str:
        path = self._path(key)
        directory = os.path.dirname(path)
        temp = os.path.join(directory, f"{_TEMP_PREFIX}{uuid.uuid4().hex}")
        try:
            os.makedirs(directory, exist_ok=True)
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
                os.fsync(fd)
            finally:
                os.close(fd)
            os.rename(temp, path)
            _sync_directory(directory)
            return _version(os.stat(path))
        except OSError as error:
            _remove_quietly(temp)
            raise _store_error("put", key, error) from error

    @contextmanager
    def _exclusive(self, key: str) -> Iterator[None]:
        with self._lock:
            try:
                fd = os.open(
                    os.path.join(self.root, _LOCK_NAME), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC
                )
            except OSError as error:
                raise _store_error("lock", key, error) from error
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                yield
            finally:
                os.close(fd)  # releases the flock

    # -- reading --------------------------------------------------------------

    def get(self, key: str, start: int = 0, end: int | None = None) -> bytes:
        path = self._path(key)
        try:
            with open(path, "rb", buffering=0) as file:
                if end is None:
                    end = os.fstat(file.fileno()).st_size
                return os.pread(file.fileno(), max(0, end - start), start)
        except FileNotFoundError as error:
            raise ObjectNotFound(key) from error
        except OSError as error:
            raise _store_error("get", key, error) from error

    def get_versioned(self, key: str) -> tuple[bytes, str]:
        path = self._path(key)
        try:
            with open(path, "rb", buffering=0) as file:
                # The open file is the version we stat: a rename cannot change it.
                return file.read(), _version(os.fstat(file.fileno()))
        except FileNotFoundError as error:
            raise ObjectNotFound(key) from error
        except OSError as error:
            raise _store_error("get", key, error) from error

    def head(self, key: str) -> ObjectInfo:
        try:
            status = os.stat(self._path(key))
        except FileNotFoundError as error:
            raise ObjectNotFound(key) from error
        except OSError as error:
            raise _store_error("head", key, error) from error
        return ObjectInfo(key, status.st_size, _version(status))

    def delete(self, key: str) -> None:
        try:
            os.unlink(self._path(key))
        except FileNotFoundError:
            pass
        except OSError as error:
            raise _store_error("delete", key, error) from error

    def list(self, prefix: str = "") -> list[ObjectInfo]:
        # Walk only the deepest directory the prefix names in full.
        base = prefix.rsplit("/", 1)[0] if "/" in prefix else ""
        top = os.path.join(self.root, *base.split("/")) if base else self.root
        found: list[ObjectInfo] = []
        try:
            for directory, subdirs, files in os.walk(top):
                subdirs[:] = [d for d in subdirs if not d.startswith(".")]
                relative = os.path.relpath(directory, self.root)
                for name in files:
                    if name.startswith("."):
                        continue  # temp files and the lock
                    key = name if relative == "." else f"{relative.replace(os.sep, '/')}/{name}"
                    if not key.startswith(prefix):
                        continue
                    try:
                        status = os.stat(os.path.join(directory, name))
                    except FileNotFoundError:
                        continue  # deleted while we walked
                    found.append(ObjectInfo(key, status.st_size, _version(status)))
        except OSError as error:
            raise _store_error("list", prefix, error) from error
        found.sort()
        return found


def _version(status: os.stat_result) -> str:
    return f"{status.st_ino:x}-{status.st_mtime_ns:x}-{status.st_size:x}"


def _sync_directory(directory: str) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _remove_quietly(path: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)


def _store_error(operation: str, key: str, error: OSError) -> ObjectStoreError:
    failure = ObjectStoreError(operation, key, f"{error.strerror or error} ({error.filename})")
    failure.transient = error.errno not in _PERMANENT
    return failure
