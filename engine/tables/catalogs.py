"""The Iceberg catalog table topics are kept in, and the warehouse (the
engine's own object store) their files go to.

Imported by the writer only: it needs pyiceberg.
"""

from __future__ import annotations

import os
from typing import Any

from pyiceberg.catalog import Catalog, load_catalog

from engine.tables.settings import WAREHOUSE_PREFIX, TablesConfig
from s3stream import ObjectStore
from s3stream.store.local import LocalStore
from s3stream.store.s3 import S3Store


def open_catalog(config: TablesConfig, data_dir: str, store: ObjectStore) -> Catalog:
    """The catalog ``config`` names, with FileIO set up for ``store``."""
    properties: dict[str, str] = {**_file_io(store), **dict(config.properties)}
    if config.catalog == "rest":
        # A REST catalog places its tables itself; its "warehouse" names one
        # of the server's warehouses, so it is passed only when set.
        properties.update(type="rest", uri=config.uri)
        if config.warehouse:
            properties["warehouse"] = config.warehouse
        return load_catalog("tidelog", **properties)
    if config.uri:
        uri = config.uri
    else:
        directory = os.path.join(data_dir, WAREHOUSE_PREFIX)
        os.makedirs(directory, mode=0o700, exist_ok=True)
        uri = f"sqlite:///{os.path.join(directory, 'catalog.db')}"
    properties.update(type="sql", uri=uri)
    properties["warehouse"] = config.warehouse or warehouse_url(store, data_dir)
    return load_catalog("tidelog", **properties)


def warehouse_url(store: ObjectStore, data_dir: str) -> str:
    """``tables/`` in ``store`` (file:// or s3://); under the data
    directory for a store that keeps nothing on disk (memory://)."""
    inner = _inner(store)
    if isinstance(inner, LocalStore):
        return f"file://{os.path.join(inner.root, WAREHOUSE_PREFIX)}"
    if isinstance(inner, S3Store):
        return f"s3://{inner.bucket}/{inner.prefix}{WAREHOUSE_PREFIX}"
    return f"file://{os.path.join(os.path.abspath(data_dir), WAREHOUSE_PREFIX, 'warehouse')}"


def _file_io(store: ObjectStore) -> dict[str, str]:
    """pyiceberg's S3 FileIO settings for an S3 store: its endpoint, region
    and credentials (path-style addressing, as the store uses)."""
    inner = _inner(store)
    if not isinstance(inner, S3Store):
        return {}
    settings = inner.connection()  # holds the secret key: never logged
    given = {
        "s3.endpoint": settings.endpoint_url,
        "s3.region": settings.region,
        "s3.access-key-id": settings.access_key_id,
        "s3.secret-access-key": settings.secret_access_key,
        "s3.session-token": settings.session_token,
    }
    return {
        "s3.force-virtual-addressing": "false",
        **{name: value for name, value in given.items() if value},
    }


def _inner(store: ObjectStore) -> Any:
    """The store under wrappers (MeteredStore)."""
    while hasattr(store, "inner"):
        store = store.inner
    return store


def table_directory(table: str, topic_id: str) -> str:
    """Where in its namespace's directory a table topic's table lives: its
    name and its topic's id (hex), so that the files of a deleted topic's
    table and of a new topic of the same name never meet."""
    return f"{table}-{topic_id}"


def newest_metadata(
    store: ObjectStore, data_dir: str, namespace: str, directory: str
) -> str | None:
    """The newest metadata file of the table in ``directory`` of the store's
    own warehouse (None: there is none). A catalog that lost its entry (the
    SQLite catalog of a machine that is gone) registers this file again
    rather than starting the table over beside its files."""
    inner = _inner(store)
    if not isinstance(inner, LocalStore | S3Store):
        return None
    prefix = f"{WAREHOUSE_PREFIX}/{namespace}/{directory}/metadata/"
    versions = []
    for info in store.list(prefix):
        name = info.key[len(prefix) :]
        number, _, rest = name.partition("-")
        if number.isdigit() and rest.endswith(".metadata.json") and "/" not in rest:
            versions.append((int(number), name))
    if not versions:
        return None
    return f"{warehouse_url(store, data_dir)}/{namespace}/{directory}/metadata/{max(versions)[1]}"
