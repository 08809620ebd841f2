"""A throwaway certificate authority for TLS tests, made at test time with
``cryptography``: a CA, a server certificate for 127.0.0.1 and localhost,
and client certificates, as PEM files in a temporary directory (never kept
in the repository)."""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from engine.server.config import ServerConfig
from engine.server.listeners import parse_listeners


@dataclass(frozen=True)
class Pem:
    certificate: Path
    key: Path


def _name(common_name: str, unit: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "US"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Tidelog Tests"),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, unit),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


class Authority:
    """A CA that signs server and client certificates into ``directory``."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._key = ec.generate_private_key(ec.SECP256R1())
        self._name = _name("Tidelog Test CA", "CA")
        now = datetime.datetime.now(datetime.UTC)
        self._certificate = (
            x509.CertificateBuilder()
            .subject_name(self._name)
            .issuer_name(self._name)
            .public_key(self._key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(self._key, hashes.SHA256())
        )
        self.ca = directory / "ca.pem"
        self.ca.write_bytes(self._certificate.public_bytes(serialization.Encoding.PEM))

    def issue(
        self, name: str, *, common_name: str, unit: str, server: bool, expired: bool = False
    ) -> Pem:
        """``expired``: valid until an hour ago."""
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        until = now - datetime.timedelta(hours=1) if expired else now + datetime.timedelta(days=2)
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(common_name, unit))
            .issuer_name(self._name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(until)
        )
        if server:
            builder = builder.add_extension(
                x509.SubjectAlternativeName(
                    [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
                ),
                critical=False,
            )
        certificate = builder.sign(self._key, hashes.SHA256())
        pem = Pem(self.directory / f"{name}.crt", self.directory / f"{name}.key")
        pem.certificate.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
        pem.key.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        return pem

    def keystore(self, pem: Pem, password: bytes | None = None) -> Path:
        """One PEM file with the certificate and its key (encrypted with
        ``password``), as ssl.keystore.location takes it."""
        key = serialization.load_pem_private_key(pem.key.read_bytes(), None)
        encryption: serialization.KeySerializationEncryption = (
            serialization.BestAvailableEncryption(password)
            if password
            else serialization.NoEncryption()
        )
        path = pem.certificate.with_suffix(".keystore.pem")
        path.write_bytes(
            pem.certificate.read_bytes()
            + key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
            )
        )
        return path


@dataclass
class Tls:
    """A CA, the server's certificate in a keystore whose key is encrypted
    (its password in a file), and a client certificate, ``alice``'s."""

    authority: Authority
    server: Pem
    keystore: Path
    key_password: Path
    alice: Pem

    def mutual_tls(self, **settings: Any) -> ServerConfig:
        """An SSL listener on an ephemeral port that requires a client
        certificate this CA signed."""
        return ServerConfig(
            listeners=parse_listeners("SSL://127.0.0.1:0"),
            ssl_keystore_location=str(self.keystore),
            ssl_key_password_file=str(self.key_password),
            ssl_truststore_location=str(self.authority.ca),
            ssl_client_auth="required",
            **settings,
        )


def issue_tls(root: Path) -> Tls:
    """A fresh CA and its certificates under ``root``."""
    authority = Authority(root)
    server = authority.issue("server", common_name="localhost", unit="Servers", server=True)
    key_password = root / "key-password"
    key_password.write_text("keystore secret\n")
    keystore = authority.keystore(server, b"keystore secret")
    alice = authority.issue("alice", common_name="alice", unit="Clients", server=False)
    return Tls(authority, server, keystore, key_password, alice)
