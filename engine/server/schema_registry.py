"""Confluent's Schema Registry REST API over the engine's registry
(engine/schemas/store.py), on the server's asyncio loop with aiohttp.

The subset serializers and tools use (docs/schema-registry.md): subjects
and their versions, schemas by id, compatibility checks, config and mode.
Every store call runs off the loop (a write is a catalog append that waits
for the WAL). Bodies are read up to ``max_request_bytes`` and no further,
whatever Content-Length claims. Errors answer Confluent's body,
``{"error_code": ..., "message": ...}``, with its HTTP status.

Authentication: HTTP Basic against the users the Kafka side's SASL
mechanisms check (``engine.credentials``), when the Kafka side has SASL on
or the config asks for it. Passwords are checked in the Kafka side's
bounded pool (engine/server/sasl/password_checks.py): past its queue a
request is answered 503 at once, and an unknown user's password costs a
derivation as a known user's does. Authorization: writes (register, delete, config,
mode) need ALTER on the cluster resource when an authorizer is configured;
reads need only an authenticated user.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import functools
import hmac
import json
import logging
import os
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from aiohttp import web

from engine.catalog_snapshot import waited_after
from engine.credentials import PLAIN, ScramCredential
from engine.engine import Engine
from engine.errors import EngineError
from engine.schemas.errors import (
    BadRequest,
    Forbidden,
    InvalidSchema,
    RegistryError,
    Unauthorized,
)
from engine.schemas.store import SchemaRegistry, SubjectVersion, served_types
from engine.schemas.types import AVRO, PROTOBUF, RegisteredSchema, SchemaReference
from engine.server.acl_authorizer import authorizer_for
from engine.server.authorizer import ANONYMOUS, CLUSTER_NAME, AclOperation, Authorizer, ResourceType
from engine.server.config import ServerConfig
from engine.server.http_site import HttpSite
from engine.server.registry_config import RegistryConfig
from engine.server.sasl import PasswordCheck
from engine.server.sasl.password_checks import NO_SUCH_USER, PasswordChecks, PasswordChecksBusy
from wal.thread_priority import ThreadPriority

log = logging.getLogger("tidelog.schema_registry")

CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"
VERIFIED_MAX = 1024
"""Checked passwords remembered, at most."""
PRINCIPAL = web.RequestKey("principal", str)
"""Who the request authenticated as (``User:ANONYMOUS`` without authentication)."""
STORE_ERROR = 50001
"""Confluent's error code for a failure of the registry's store."""
REALM = 'Basic realm="tidelog-schema-registry"'
_T = TypeVar("_T")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _json(value: Any, status: int = 200) -> web.Response:
    return web.Response(text=json.dumps(value), status=status, content_type=CONTENT_TYPE)


def _error(status: int, code: int, message: str) -> web.Response:
    response = _json({"error_code": code, "message": message}, status)
    if status == 401:
        response.headers["WWW-Authenticate"] = REALM
    return response


def _flag(request: web.Request, name: str) -> bool:
    return request.query.get(name, "false").lower() == "true"


def _version_body(found: SubjectVersion, text: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "subject": found.subject,
        "version": found.version,
        "id": found.schema.schema_id,
        "schema": found.schema.schema if text is None else text,
    }
    return _typed(body, found.schema.schema_type, found.schema.references)


def _typed(
    body: dict[str, Any], schema_type: str, references: tuple[SchemaReference, ...]
) -> dict[str, Any]:
    if schema_type != AVRO:
        body["schemaType"] = schema_type
    if references:
        body["references"] = [
            {"name": r.name, "subject": r.subject, "version": r.version} for r in references
        ]
    return body


class SchemaRequest:
    """A register, lookup or compatibility request's body, checked."""

    def __init__(self, raw: Any) -> None:
        if not isinstance(raw, dict):
            raise BadRequest("the request body must be a JSON object")
        schema = raw.get("schema")
        if not isinstance(schema, str):
            raise InvalidSchema("Invalid schema: the body's 'schema' must be a string")
        schema_type = raw.get("schemaType") or AVRO
        if not isinstance(schema_type, str):
            raise InvalidSchema("Invalid schema: 'schemaType' must be a string")
        self.schema = schema
        self.schema_type = schema_type.upper()
        self.references = tuple(_reference(r) for r in raw.get("references") or [])
        self.schema_id = _optional_int(raw, "id")
        self.version = _optional_int(raw, "version")


def _optional_int(raw: dict[str, Any], key: str) -> int | None:
    value = raw.get(key)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool):
        raise BadRequest(f"'{key}' must be an integer")
    return value


def _reference(raw: Any) -> SchemaReference:
    if not isinstance(raw, dict):
        raise InvalidSchema("Invalid schema: a reference is an object")
    name, subject, version = raw.get("name"), raw.get("subject"), raw.get("version")
    if not (isinstance(name, str) and isinstance(subject, str) and isinstance(version, int)):
        raise InvalidSchema("Invalid schema: a reference has a name, a subject and a version")
    return SchemaReference(name, subject, version)


class SchemaRegistryServer:
    """The API's listener: start() binds it, stop() closes it."""

    def __init__(
        self,
        engine: Engine,
        config: RegistryConfig,
        *,
        authenticate: bool,
        authorizer: Authorizer | None = None,
        password_checks: PasswordChecks | Callable[[], PasswordChecks] | None = None,
    ) -> None:
        """``password_checks``: the Kafka side's pool, or where to find it
        at each check (a Server makes a new pool when started again, and
        the one it stopped refuses every check); None: a pool of this
        API's own, of the Kafka side's default size. Either way a client
        address has its share of it, as on the Kafka side."""
        self.engine = engine
        self.registry: SchemaRegistry = engine.schemas
        self.config = config
        self.authenticate = authenticate
        self.authorizer = authorizer
        self._own_checks: PasswordChecks | None = None
        if password_checks is None:
            defaults = ServerConfig()
            self._own_checks = password_checks = PasswordChecks(
                defaults.sasl_password_check_threads,
                defaults.sasl_password_check_queue_size,
                defaults.password_checks_per_address,
                ThreadPriority(),
            )
        self._password_checks: Callable[[], PasswordChecks] = (
            functools.partial(_the_pool, password_checks)
            if isinstance(password_checks, PasswordChecks)
            else password_checks
        )
        self._verified: dict[tuple[str, bytes], dict[str, ScramCredential]] = {}
        """Passwords checked already, by user and a keyed digest of the
        password, with the credentials they matched: a client's every
        request needs no new key derivation, and a changed password (other
        credentials) is checked afresh."""
        self._digest_key = os.urandom(32)
        self._http = HttpSite()

    @property
    def port(self) -> int:
        """The bound port (the one the OS chose, for port 0)."""
        return self._http.port

    def app(self) -> web.Application:
        app = web.Application(
            client_max_size=self.config.max_request_bytes,
            middlewares=[self._errors, self._authentication],
        )
        add = app.router.add_route
        add("GET", "/", self._root)
        add("GET", "/subjects", self._subjects)
        add("GET", "/subjects/{subject}/versions", self._versions)
        add("POST", "/subjects/{subject}/versions", self._register)
        add("GET", "/subjects/{subject}/versions/{version}", self._version)
        add("GET", "/subjects/{subject}/versions/{version}/schema", self._version_schema)
        add("GET", "/subjects/{subject}/versions/{version}/referencedby", self._referenced_by)
        add("DELETE", "/subjects/{subject}/versions/{version}", self._delete_version)
        add("POST", "/subjects/{subject}", self._lookup)
        add("DELETE", "/subjects/{subject}", self._delete_subject)
        add("GET", "/schemas/types", self._types)
        add("GET", "/schemas/ids/{id}", self._schema)
        add("GET", "/schemas/ids/{id}/schema", self._schema_text)
        add("GET", "/schemas/ids/{id}/subjects", self._schema_subjects)
        add("GET", "/schemas/ids/{id}/versions", self._schema_versions)
        add("POST", "/compatibility/subjects/{subject}/versions/{version}", self._compatible)
        add("POST", "/compatibility/subjects/{subject}/versions", self._compatible)
        for path in ("/config", "/config/{subject}"):
            add("GET", path, self._get_config)
            add("PUT", path, self._put_config)
            add("DELETE", path, self._delete_config)
        for path in ("/mode", "/mode/{subject}"):
            add("GET", path, self._get_mode)
            add("PUT", path, self._put_mode)
        add("DELETE", "/mode/{subject}", self._delete_mode)
        return app

    async def start(self) -> None:
        assert self.config.listen is not None, "no listen address"
        host, port = self.config.listen
        await self._http.start(self.app(), host, port, self.config)
        log.info(
            "Schema Registry API on http://%s:%d (authentication %s)",
            host,
            self.port,
            "HTTP Basic" if self.authenticate else "off",
        )

    async def stop(self) -> None:
        await self._http.stop()
        if self._own_checks is not None:
            self._own_checks.shutdown()

    # -- middlewares -------------------------------------------------------------

    @web.middleware
    async def _errors(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        claimed = request.content_length
        if claimed is not None and claimed > self.config.max_request_bytes:
            # Refused on the claim, before a byte of the body is read.
            return _error(413, 413, self._too_large())
        try:
            return await handler(request)
        except RegistryError as error:
            return _error(error.http_status, error.registry_code, str(error))
        except PasswordChecksBusy:
            # Every password check's place is taken: try again shortly, as
            # a Kafka client retries a login whose connection was closed.
            response = _error(503, 503, "too many logins at once, try again")
            response.headers["Retry-After"] = "1"
            return response
        except web.HTTPRequestEntityTooLarge:
            return _error(413, 413, self._too_large())
        except TimeoutError:
            return _error(
                408, 408, f"the request body did not arrive in {self.config.body_timeout_s:g} s"
            )
        except web.HTTPException as error:
            if error.status < 400:
                raise
            return _error(error.status, error.status, f"HTTP {error.status} {error.reason}")
        except EngineError as error:
            # The catalog could not be written (the WAL or the object store
            # failed, the store was taken over): Confluent's store error.
            log.warning("schema registry: %s %s failed: %s", request.method, request.path, error)
            return _error(500, STORE_ERROR, f"Error in the backend data store: {error}")

    @web.middleware
    async def _authentication(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        request[PRINCIPAL] = ANONYMOUS
        if self.authenticate:
            request[PRINCIPAL] = await self._principal(request)
        return await handler(request)

    async def _principal(self, request: web.Request) -> str:
        header = request.headers.get("Authorization", "")
        scheme, _, encoded = header.partition(" ")
        if scheme.lower() != "basic" or len(encoded) > 4096:
            raise Unauthorized("Unauthorized: HTTP Basic credentials are needed")
        try:
            user, sep, password = base64.b64decode(encoded, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            raise Unauthorized("Unauthorized: malformed HTTP Basic credentials") from None
        check = self._password_checks().for_address(request.remote or "")
        if not sep or not await self._password_matches(check, user, password):
            log.warning("schema registry: failed authentication for user %r", user)
            raise Unauthorized("Unauthorized: wrong user name or password")
        return f"User:{user}"

    async def _password_matches(self, check: PasswordCheck, user: str, password: str) -> bool:
        credentials = self.engine.credentials.mechanisms(user)
        if not credentials:
            await check(NO_SUCH_USER, PLAIN, password.encode())  # as a known user's
            return False
        key = (user, hmac.digest(self._digest_key, password.encode(), "sha256"))
        if self._verified.get(key) == credentials:
            return True
        matches = False
        for mechanism, credential in credentials.items():
            if await check(credential, mechanism, password.encode()):
                matches = True
                break
        if matches:
            if len(self._verified) >= VERIFIED_MAX:
                self._verified.clear()
            self._verified[key] = credentials
        return matches

    def _may_write(self, request: web.Request) -> None:
        principal: str = request[PRINCIPAL]
        if self.authorizer is None:
            return
        host = request.remote or "*"
        if not self.authorizer.authorize(
            principal, AclOperation.ALTER, ResourceType.CLUSTER, CLUSTER_NAME, host
        ):
            raise Forbidden(
                f"{principal} may not change the schema registry (ALTER on the cluster)"
            )

    async def _off_loop(self, call: Callable[[], _T]) -> _T:
        def paid() -> _T:
            # A catalog snapshot the call made due is waited for after the
            # store's lock is released, before the answer (catalog_snapshot.py).
            with waited_after():
                return call()

        return await asyncio.get_running_loop().run_in_executor(None, paid)

    def _too_large(self) -> str:
        return f"the request body is larger than {self.config.max_request_bytes} bytes"

    async def _body(self, request: web.Request) -> Any:
        async with asyncio.timeout(self.config.body_timeout_s):
            raw = await request.read()
        try:
            return json.loads(raw) if raw else {}
        except (ValueError, UnicodeDecodeError, RecursionError) as error:
            raise BadRequest(f"the request body is not JSON: {error}") from None

    # -- subjects ----------------------------------------------------------------

    async def _root(self, request: web.Request) -> web.Response:
        return _json({})

    async def _subjects(self, request: web.Request) -> web.Response:
        deleted, prefix = _flag(request, "deleted"), request.query.get("subjectPrefix", "")
        return _json(await self._off_loop(lambda: self.registry.subjects(deleted, prefix)))

    async def _versions(self, request: web.Request) -> web.Response:
        subject, deleted = request.match_info["subject"], _flag(request, "deleted")
        return _json(await self._off_loop(lambda: self.registry.versions(subject, deleted)))

    async def _register(self, request: web.Request) -> web.Response:
        self._may_write(request)
        subject = request.match_info["subject"]
        body = SchemaRequest(await self._body(request))
        normalize = _flag(request, "normalize")
        schema_id = await self._off_loop(
            lambda: self.registry.register(
                subject,
                body.schema,
                body.schema_type,
                body.references,
                normalize=normalize,
                schema_id=body.schema_id,
                version=body.version,
            )
        )
        return _json({"id": schema_id})

    async def _version(self, request: web.Request) -> web.Response:
        found = await self._found_version(request)
        return _json(_version_body(found, await self._text(request, found.schema)))

    async def _version_schema(self, request: web.Request) -> web.Response:
        found = await self._found_version(request)
        text = await self._text(request, found.schema)
        return web.Response(text=text, content_type=CONTENT_TYPE)

    async def _text(self, request: web.Request, schema: RegisteredSchema) -> str:
        """The schema's text in the ``format`` asked for: ``serialized`` gives
        a PROTOBUF schema as a base64 FileDescriptorProto (what Confluent's
        Protobuf deserializers ask for); otherwise the text as registered."""
        if request.query.get("format") != "serialized" or schema.schema_type != PROTOBUF:
            return schema.schema
        return await self._off_loop(lambda: self.registry.serialized(schema))

    async def _found_version(self, request: web.Request) -> SubjectVersion:
        subject, version = request.match_info["subject"], request.match_info["version"]
        deleted = _flag(request, "deleted")
        return await self._off_loop(lambda: self.registry.version(subject, version, deleted))

    async def _referenced_by(self, request: web.Request) -> web.Response:
        found = await self._found_version(request)
        ids = await self._off_loop(
            lambda: self.registry.referenced_by(found.subject, found.version)
        )
        return _json(ids)

    async def _delete_version(self, request: web.Request) -> web.Response:
        self._may_write(request)
        subject, version = request.match_info["subject"], request.match_info["version"]
        permanent = _flag(request, "permanent")
        return _json(
            await self._off_loop(lambda: self.registry.delete_version(subject, version, permanent))
        )

    async def _lookup(self, request: web.Request) -> web.Response:
        subject = request.match_info["subject"]
        body = SchemaRequest(await self._body(request))
        normalize, deleted = _flag(request, "normalize"), _flag(request, "deleted")
        found = await self._off_loop(
            lambda: self.registry.lookup(
                subject,
                body.schema,
                body.schema_type,
                body.references,
                normalize=normalize,
                deleted=deleted,
            )
        )
        return _json(_version_body(found))

    async def _delete_subject(self, request: web.Request) -> web.Response:
        self._may_write(request)
        subject, permanent = request.match_info["subject"], _flag(request, "permanent")
        return _json(await self._off_loop(lambda: self.registry.delete_subject(subject, permanent)))

    # -- schemas by id -----------------------------------------------------------

    def _id(self, request: web.Request) -> int:
        text = request.match_info["id"]
        if not text.isdigit() or len(text) > 10:
            raise BadRequest(f"schema id {text!r} is not a number")
        return int(text)

    async def _types(self, request: web.Request) -> web.Response:
        return _json(list(served_types()))

    async def _schema(self, request: web.Request) -> web.Response:
        schema_id = self._id(request)
        found = await self._off_loop(lambda: self.registry.schema(schema_id))
        text = await self._text(request, found)
        return _json(_typed({"schema": text}, found.schema_type, found.references))

    async def _schema_text(self, request: web.Request) -> web.Response:
        schema_id = self._id(request)
        found = await self._off_loop(lambda: self.registry.schema(schema_id))
        return web.Response(text=await self._text(request, found), content_type=CONTENT_TYPE)

    async def _schema_subjects(self, request: web.Request) -> web.Response:
        schema_id, deleted = self._id(request), _flag(request, "deleted")
        pairs = await self._off_loop(lambda: self.registry.subject_versions_of(schema_id, deleted))
        return _json(sorted({subject for subject, _ in pairs}))

    async def _schema_versions(self, request: web.Request) -> web.Response:
        schema_id, deleted = self._id(request), _flag(request, "deleted")
        pairs = await self._off_loop(lambda: self.registry.subject_versions_of(schema_id, deleted))
        return _json([{"subject": s, "version": v} for s, v in pairs])

    # -- compatibility, config, mode --------------------------------------------

    async def _compatible(self, request: web.Request) -> web.Response:
        subject = request.match_info["subject"]
        version = request.match_info.get("version")
        body = SchemaRequest(await self._body(request))
        normalize = _flag(request, "normalize")
        reasons = await self._off_loop(
            lambda: self.registry.check(
                subject,
                body.schema,
                body.schema_type,
                body.references,
                version,
                normalize=normalize,
            )
        )
        answer: dict[str, Any] = {"is_compatible": not reasons}
        if _flag(request, "verbose"):
            answer["messages"] = reasons
        return _json(answer)

    async def _get_config(self, request: web.Request) -> web.Response:
        subject = request.match_info.get("subject")
        to_global = _flag(request, "defaultToGlobal")
        level = await self._off_loop(lambda: self.registry.compatibility(subject, to_global))
        return _json({"compatibilityLevel": level})

    async def _put_config(self, request: web.Request) -> web.Response:
        self._may_write(request)
        subject = request.match_info.get("subject")
        body = await self._body(request)
        level = None
        if isinstance(body, dict):
            level = body.get("compatibility", body.get("compatibilityLevel"))
        done = await self._off_loop(lambda: self.registry.set_compatibility(level, subject))
        return _json({"compatibility": done})

    async def _delete_config(self, request: web.Request) -> web.Response:
        self._may_write(request)
        subject = request.match_info.get("subject")
        old = await self._off_loop(lambda: self.registry.delete_compatibility(subject))
        return _json({"compatibilityLevel": old})

    async def _get_mode(self, request: web.Request) -> web.Response:
        subject = request.match_info.get("subject")
        to_global = _flag(request, "defaultToGlobal")
        return _json({"mode": await self._off_loop(lambda: self.registry.mode(subject, to_global))})

    async def _put_mode(self, request: web.Request) -> web.Response:
        self._may_write(request)
        subject = request.match_info.get("subject")
        body = await self._body(request)
        mode = body.get("mode") if isinstance(body, dict) else None
        force = _flag(request, "force")
        return _json(
            {"mode": await self._off_loop(lambda: self.registry.set_mode(mode, subject, force))}
        )

    async def _delete_mode(self, request: web.Request) -> web.Response:
        self._may_write(request)
        subject = request.match_info["subject"]
        return _json({"mode": await self._off_loop(lambda: self.registry.delete_mode(subject))})


def _the_pool(pool: PasswordChecks) -> PasswordChecks:
    """A pool given as it is, found where a Server's would be."""
    return pool


def registry_server_for(
    engine: Engine,
    config: RegistryConfig,
    server: ServerConfig,
    password_checks: PasswordChecks | Callable[[], PasswordChecks] | None = None,
) -> SchemaRegistryServer:
    """The API as ``tidelog serve`` runs it beside the Kafka listeners:
    authenticated when the config says so, or (``auto``) when a Kafka
    listener authenticates (SASL, or TLS requiring client certificates);
    writes authorized by the Kafka side's authorizer; passwords checked
    by ``password_checks`` (the Kafka side's pool, or where to find the
    current one)."""
    kafka_authenticates = any(
        listener.protocol.uses_sasl
        or (listener.protocol.uses_tls and server.ssl_client_auth == "required")
        for listener in server.effective_listeners
    )
    authenticate = config.authentication == "basic" or (
        config.authentication == "auto" and kafka_authenticates
    )
    if config.authentication == "none" and kafka_authenticates:
        log.warning(
            "the Schema Registry API is open to everyone (authentication = none)"
            " while the Kafka listeners authenticate their clients"
        )
    authorizer = authorizer_for(server, engine) if server.authorizer else None
    return SchemaRegistryServer(
        engine,
        config,
        authenticate=authenticate,
        authorizer=authorizer,
        password_checks=password_checks,
    )
