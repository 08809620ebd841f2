"""What the client security matrix shares: one ``tidelog serve`` with a
PLAINTEXT listener for setting up (its ANONYMOUS clients are super users,
as docs/security.md lays out), a SASL_SSL listener (SCRAM-SHA-512 and
PLAIN) and an SSL listener with mutual TLS, the ACL authorizer, a CA and
certificates made for the run, one user and one certificate principal,
and the ACLs that let both of them use topics and groups named ``ok-...``
and nothing else.

The access a client is given is an :class:`Access`: how it connects and as
whom. Each client's adapter (tests/server/matrix_clients.py) turns one
into that client's own settings."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from confluent_kafka.admin import (
    AclBinding,
    AclOperation,
    AclPermissionType,
    AdminClient,
    NewTopic,
    ResourcePatternType,
    ResourceType,
)

from tests.server.certificates import Authority, Pem
from tests.server.conftest import GROUP_SERVER_CONFIG, ServerProcess, free_port, quiet_librdkafka
from tests.server.test_sasl import add_user

TIMEOUT = 30.0
USER = "alice"
PASSWORD = "correct horse battery staple"
CERTIFICATE_USER = "carol"
"""The user the client certificate's subject (CN=Carol,OU=Clients,...) maps to."""
MAPPING_RULES = "RULE:^CN=([^,]*),OU=Clients,.*$/$1/L,DEFAULT"
ALLOWED = "ok-"
"""The prefix of the topics and groups both principals may use."""
DENIED = "no-"
"""The prefix of topics and groups no ACL names: refused to both."""


@dataclass(frozen=True)
class Access:
    """How a client connects: ``protocol`` is Kafka's security.protocol and
    ``mechanism`` the SASL mechanism (None on SSL, where the certificate
    names the client)."""

    bootstrap: str
    protocol: str
    ca: Path
    mechanism: str | None = None
    user: str = ""
    password: str = ""
    client: Pem | None = None

    def but(self, *, password: str) -> Access:
        return Access(
            self.bootstrap, self.protocol, self.ca, self.mechanism, self.user, password, self.client
        )


@dataclass
class Matrix:
    """The module's server and what its clients need."""

    server: ServerProcess
    sasl_ssl_port: int
    ssl_port: int
    authority: Authority
    client: Pem

    def scram(self) -> Access:
        return self._sasl("SCRAM-SHA-512")

    def plain(self) -> Access:
        return self._sasl("PLAIN")

    def _sasl(self, mechanism: str) -> Access:
        return Access(
            f"localhost:{self.sasl_ssl_port}",
            "SASL_SSL",
            self.authority.ca,
            mechanism,
            USER,
            PASSWORD,
        )

    def mtls(self) -> Access:
        return Access(f"localhost:{self.ssl_port}", "SSL", self.authority.ca, client=self.client)

    def admin(self) -> AdminClient:
        return AdminClient({"bootstrap.servers": self.server.bootstrap, **quiet_librdkafka()})

    def topic(self, prefix: str) -> str:
        """A new topic of one partition, named ``prefix`` and a fresh suffix."""
        name = f"{prefix}{uuid.uuid4().hex[:12]}"
        admin = self.admin()  # kept until the future is done
        admin.create_topics([NewTopic(name, 1)])[name].result(TIMEOUT)
        return name


def _allow(principal: str, kind: ResourceType, operation: AclOperation) -> AclBinding:
    return AclBinding(
        kind, ALLOWED, ResourcePatternType.PREFIXED, principal, "*", operation,
        AclPermissionType.ALLOW,
    )  # fmt: skip


def start_matrix(root: Path) -> Matrix:
    authority = Authority(root)
    server_pem = authority.issue("server", common_name="localhost", unit="Servers", server=True)
    client = authority.issue("carol", common_name="Carol", unit="Clients", server=False)
    process = ServerProcess(root / "data")
    sasl_ssl_port, ssl_port = free_port(), free_port()
    config = root / "tidelog.toml"
    config.write_text(
        "[server]\n"
        f'listeners = "PLAINTEXT://127.0.0.1:{process.port},'
        f'SASL_SSL://127.0.0.1:{sasl_ssl_port},SSL://127.0.0.1:{ssl_port}"\n'
        f'"advertised.listeners" = "SASL_SSL://localhost:{sasl_ssl_port},'
        f'SSL://localhost:{ssl_port}"\n'
        f'"ssl.keystore.location" = "{authority.keystore(server_pem)}"\n'
        f'"ssl.truststore.location" = "{authority.ca}"\n'
        '"ssl.client.auth" = "required"\n'
        f'"ssl.principal.mapping.rules" = "{MAPPING_RULES}"\n'
        'authorizer = "acl"\n'
        '"super.users" = ["User:ANONYMOUS"]\n' + GROUP_SERVER_CONFIG
    )
    process.args = ["--config", str(config)]
    add_user(process.data_dir, USER, PASSWORD, "SCRAM-SHA-512", "PLAIN")
    process.start()
    matrix = Matrix(process, sasl_ssl_port, ssl_port, authority, client)
    try:
        acls = [
            _allow(f"User:{name}", kind, operation)
            for name in (USER, CERTIFICATE_USER)
            for kind, operation in (
                (ResourceType.TOPIC, AclOperation.ALL),
                (ResourceType.GROUP, AclOperation.READ),
            )
        ]
        admin = matrix.admin()  # kept until the futures are done
        for future in admin.create_acls(acls).values():
            future.result(TIMEOUT)
    except BaseException:
        process.kill()
        raise
    return matrix


@pytest.fixture(scope="module")
def matrix(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Matrix]:
    """One server for a test module; each test makes its own topics."""
    started = start_matrix(tmp_path_factory.mktemp("matrix"))
    yield started
    started.server.end_at_teardown(graceful=True)
