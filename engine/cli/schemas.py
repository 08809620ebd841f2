"""``tidelog schemas init|list|get|register|delete``: the schema registry,
from the command line.

Against a running server's Schema Registry API (``--url``, with
``--user`` and ``--password-file`` when it asks for HTTP Basic), or, like
``tidelog users``, on a data directory no server is running on (the
catalog in its object store; a server started afterwards, or a fresh
machine on the same bucket, sees the schemas). ``init`` registers the
agent-action JSON Schema shipped with tidelog (agent_action.schema.json).
"""

from __future__ import annotations

import argparse
import base64
import json
import logging
import sys
import urllib.error
import urllib.parse
import urllib.request
from importlib import resources
from pathlib import Path
from typing import Any, Protocol

from engine.cli.help_format import HelpFormatter, add_action, examples
from engine.cli.offline import add_data_options, file_config, open_engine
from engine.errors import EngineError
from engine.schemas.errors import RegistryError
from engine.schemas.store import SchemaRegistry
from engine.schemas.types import JSON, SCHEMA_TYPES
from engine.server.config import ConfigFileError

CANNOT_RUN = 2
AGENT_ACTIONS_SUBJECT = "agent-actions-value"
HTTP_TIMEOUT_S = 30.0
CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"


def agent_action_schema() -> str:
    """The agent-action JSON Schema shipped in the package."""
    return (resources.files("engine.schemas") / "agent_action.schema.json").read_text()


_URL = "tidelog schemas --url http://127.0.0.1:8081"
_OFFLINE = "tidelog schemas --data-dir ./data"


def add_command(commands: Any) -> None:
    parser = commands.add_parser(
        "schemas",
        help="register, list, show and delete schemas in the schema registry",
        description="The schema registry: through a server's Schema Registry API (--url) or"
        " on a data directory no server is running on.",
        epilog=examples(_URL + " list", _OFFLINE + " register payments-value payment.avsc"),
        formatter_class=HelpFormatter,
    )
    parser.add_argument("--url", help="a Schema Registry API, e.g. http://127.0.0.1:8081")
    parser.add_argument("--user", help="HTTP Basic user for --url (a SASL user)")
    parser.add_argument("--password-file", help="a file whose first line is --user's password")
    add_data_options(parser)
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    init = add_action(
        actions, "init", "register the shipped agent-action JSON Schema", _OFFLINE + " init"
    )
    init.add_argument(
        "--subject",
        default=AGENT_ACTIONS_SUBJECT,
        help=f"the subject to register it under (default {AGENT_ACTIONS_SUBJECT})",
    )
    add_action(actions, "list", "list the subjects", _URL + " list")
    get = add_action(
        actions, "get", "show a version of a subject", _URL + " get payments-value --version 1"
    )
    get.add_argument("subject")
    get.add_argument("--version", default="latest", help="a version number, or latest (default)")
    register = add_action(
        actions,
        "register",
        "register a schema from a file",
        _URL + " register payments-value payment.avsc",
        _OFFLINE + " register actions-value action.json --type JSON",
    )
    register.add_argument("subject")
    register.add_argument("file", help="the schema's text")
    register.add_argument(
        "--type",
        default="AVRO",
        choices=SCHEMA_TYPES,
        dest="schema_type",
        help="the schema's language (default AVRO)",
    )
    delete = add_action(
        actions,
        "delete",
        "delete a subject, or one version of it",
        _URL + " delete payments-value --version 1",
    )
    delete.add_argument("subject")
    delete.add_argument("--version", help="one version (default: the whole subject)")
    delete.add_argument("--permanent", action="store_true", help="a hard delete (after a soft)")
    parser.set_defaults(run=run)


class Registry(Protocol):
    def subjects(self) -> list[str]: ...
    def get(self, subject: str, version: str) -> dict[str, Any]: ...
    def register(self, subject: str, schema: str, schema_type: str) -> int: ...
    def delete(self, subject: str, version: str | None, permanent: bool) -> list[int]: ...


class RegistryFailed(Exception):
    """The registry refused: Confluent's error code and message."""

    def __init__(self, error_code: int, message: str) -> None:
        super().__init__(f"{message} (error {error_code})")
        self.error_code = error_code


class EmbeddedRegistry:
    def __init__(self, registry: SchemaRegistry) -> None:
        self.registry = registry

    def subjects(self) -> list[str]:
        return self.registry.subjects()

    def get(self, subject: str, version: str) -> dict[str, Any]:
        found = self.registry.version(subject, version)
        return {
            "subject": found.subject,
            "version": found.version,
            "id": found.schema.schema_id,
            "schemaType": found.schema.schema_type,
            "schema": found.schema.schema,
        }

    def register(self, subject: str, schema: str, schema_type: str) -> int:
        return self.registry.register(subject, schema, schema_type)

    def delete(self, subject: str, version: str | None, permanent: bool) -> list[int]:
        if version is None:
            return self.registry.delete_subject(subject, permanent)
        return [self.registry.delete_version(subject, version, permanent)]


class RemoteRegistry:
    """The Schema Registry API over HTTP (urllib: no more is needed)."""

    def __init__(self, url: str, user: str | None, password: str | None) -> None:
        self.url = url.rstrip("/")
        self.headers = {"Accept": CONTENT_TYPE, "Content-Type": CONTENT_TYPE}
        if user is not None:
            token = base64.b64encode(f"{user}:{password or ''}".encode()).decode()
            self.headers["Authorization"] = f"Basic {token}"

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            self.url + path, data=data, method=method, headers=self.headers
        )
        try:
            with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT_S) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as error:
            try:
                answer = json.loads(error.read())
                raise RegistryFailed(answer["error_code"], answer["message"]) from None
            except (ValueError, KeyError, TypeError):
                raise RegistryFailed(error.code, str(error.reason)) from None

    @staticmethod
    def _quote(subject: str) -> str:
        return urllib.parse.quote(subject, safe="")

    def subjects(self) -> list[str]:
        found: list[str] = self._call("GET", "/subjects")
        return found

    def get(self, subject: str, version: str) -> dict[str, Any]:
        found: dict[str, Any] = self._call(
            "GET", f"/subjects/{self._quote(subject)}/versions/{self._quote(version)}"
        )
        found.setdefault("schemaType", "AVRO")
        return found

    def register(self, subject: str, schema: str, schema_type: str) -> int:
        body = {"schema": schema, "schemaType": schema_type}
        answer = self._call("POST", f"/subjects/{self._quote(subject)}/versions", body)
        return int(answer["id"])

    def delete(self, subject: str, version: str | None, permanent: bool) -> list[int]:
        path = f"/subjects/{self._quote(subject)}"
        if version is not None:
            path += f"/versions/{self._quote(version)}"
        answer = self._call("DELETE", path + ("?permanent=true" if permanent else ""))
        return [int(v) for v in answer] if isinstance(answer, list) else [int(answer)]


def _act(registry: Registry, args: argparse.Namespace) -> None:
    if args.action == "init":
        schema_id = registry.register(args.subject, agent_action_schema(), JSON)
        print(f"{args.subject}: agent-action schema registered, id {schema_id}")
    elif args.action == "list":
        for subject in registry.subjects():
            print(subject)
    elif args.action == "get":
        print(json.dumps(registry.get(args.subject, args.version), indent=2))
    elif args.action == "register":
        schema = Path(args.file).read_text()
        print(f"{args.subject}: id {registry.register(args.subject, schema, args.schema_type)}")
    else:
        versions = registry.delete(args.subject, args.version, args.permanent)
        kind = "permanently deleted" if args.permanent else "deleted"
        print(f"{args.subject}: versions {', '.join(map(str, versions))} {kind}")


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(
        level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    try:
        file = file_config(args)
        password = None
        if args.password_file:
            lines = Path(args.password_file).read_text().splitlines()
            password = lines[0] if lines else ""
    except (ConfigFileError, OSError) as error:
        print(f"tidelog schemas: {error}", file=sys.stderr)
        return CANNOT_RUN
    if args.url:
        try:
            _act(RemoteRegistry(args.url, args.user, password), args)
        except RegistryFailed as error:
            print(f"tidelog schemas: {error}", file=sys.stderr)
            return 1
        except (OSError, ValueError) as error:
            print(f"tidelog schemas: {args.url}: {error}", file=sys.stderr)
            return CANNOT_RUN
        return 0
    engine = open_engine("schemas", args, file, create=args.action not in ("list", "get"))
    if engine is None:
        return CANNOT_RUN
    try:
        _act(EmbeddedRegistry(engine.schemas), args)
    except RegistryError as error:
        print(f"tidelog schemas: {error} (error {error.registry_code})", file=sys.stderr)
        return 1
    except (EngineError, OSError) as error:
        print(f"tidelog schemas: {error}", file=sys.stderr)
        return 1
    finally:
        engine.close()
    return 0
