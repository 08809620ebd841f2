"""TLS for the SSL and SASL_SSL listeners, with the standard library's
``ssl``: the server's certificate and key, TLS 1.2 or later, optional
client certificates (ssl.client.auth), and the principal a client
certificate names, by Kafka's ssl.principal.mapping.rules
(SslPrincipalMapper): ``DEFAULT`` keeps the subject's distinguished name
(RFC 2253, as Java's X500Principal.getName writes it);
``RULE:pattern/replacement/`` with an optional ``L`` or ``U`` rewrites a
name the pattern matches whole, lower- or upper-casing the result. The
first rule that matches decides; a name no rule matches is refused.
"""

from __future__ import annotations

import re
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.protocol.codec import Parts
from engine.server.config import ServerConfig


class NoMatchingRule(ValueError):
    """No ssl.principal.mapping.rules rule applies to a certificate's subject."""


_RDN_NAMES = {
    "commonName": "CN",
    "countryName": "C",
    "localityName": "L",
    "stateOrProvinceName": "ST",
    "organizationName": "O",
    "organizationalUnitName": "OU",
    "streetAddress": "STREET",
    "domainComponent": "DC",
    "userId": "UID",
}
"""RFC 2253's keywords; others are written with the name ssl reports."""
_RULE = re.compile(
    r"\s*(?:(?P<default>DEFAULT)|RULE:(?P<pattern>(?:\\/|[^/])*)/(?P<replacement>(?:\\/|[^/])*)/"
    r"(?P<case>[LU]?))\s*(?:,|$)"
)


@dataclass(frozen=True)
class _Rule:
    pattern: re.Pattern[str] | None
    """None for DEFAULT."""
    replacement: str
    case: str


class PrincipalMapper:
    """Kafka's SslPrincipalMapper: a certificate's subject to a user name."""

    def __init__(self, rules: str) -> None:
        self._rules: list[_Rule] = []
        position = 0
        text = rules.strip() or "DEFAULT"
        while position < len(text):
            found = _RULE.match(text, position)
            if found is None or found.end() == position:
                raise ValueError(f"ssl.principal.mapping.rules: cannot read {text[position:]!r}")
            position = found.end()
            if found["default"]:
                self._rules.append(_Rule(None, "", ""))
                continue
            pattern = found["pattern"].replace("\\/", "/")
            # Java's $1 in a replacement is Python's \g<1>.
            replacement = re.sub(r"\$(\d+)", r"\\g<\1>", found["replacement"].replace("\\/", "/"))
            self._rules.append(_Rule(re.compile(pattern), replacement, found["case"]))

    def name(self, distinguished_name: str) -> str:
        for rule in self._rules:
            if rule.pattern is None:
                return distinguished_name
            if rule.pattern.fullmatch(distinguished_name):
                mapped = rule.pattern.sub(rule.replacement, distinguished_name)
                if rule.case == "L":
                    return mapped.lower()
                if rule.case == "U":
                    return mapped.upper()
                return mapped
        raise NoMatchingRule(
            f"no ssl.principal.mapping.rules rule applies to {distinguished_name!r}"
        )


def _escape(value: str) -> str:
    escaped = re.sub(r'([,+"\\<>;])', r"\\\1", value)
    if escaped.startswith((" ", "#")):
        escaped = "\\" + escaped
    if escaped.endswith(" "):
        escaped = escaped[:-1] + "\\ "
    return escaped


def distinguished_name(peercert: dict[str, Any]) -> str:
    """A certificate's subject as RFC 2253 writes it (most specific first)."""
    return ",".join(
        "+".join(f"{_RDN_NAMES.get(name, name)}={_escape(value)}" for name, value in rdn)
        for rdn in reversed(peercert.get("subject", ()))
    )


def server_context(config: ServerConfig, *, client_auth: bool = True) -> ssl.SSLContext:
    """The TLS context of the SSL listeners, or with ``client_auth=False``
    of the SASL_SSL listeners, which never ask for a client certificate:
    as in Kafka, ssl.client.auth is an SSL listener's (a SASL_SSL client
    is the SASL user, and it need not hold a certificate)."""
    if not config.ssl_keystore_location:
        raise ValueError("an SSL or SASL_SSL listener needs ssl.keystore.location")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    password = None
    if config.ssl_key_password_file:
        password = Path(config.ssl_key_password_file).read_text().rstrip("\r\n")
    context.load_cert_chain(config.ssl_keystore_location, password=password)
    if client_auth and config.ssl_client_auth != "none":
        if not config.ssl_truststore_location:
            raise ValueError(
                f"ssl.client.auth={config.ssl_client_auth} needs ssl.truststore.location"
            )
        context.load_verify_locations(config.ssl_truststore_location)
        context.verify_mode = (
            ssl.CERT_REQUIRED if config.ssl_client_auth == "required" else ssl.CERT_OPTIONAL
        )
    return context


TLS_WRITE_BYTES = 128 * 1024
"""The most a response gives a TLS transport at once (see tls_writes)."""
TLS_RECORD_BYTES = 16 * 1024
"""TLS's largest record: parts smaller than this are joined."""


def tls_writes(parts: Parts) -> Parts:
    """A response's parts as the writes a TLS transport takes best: small
    parts joined (each write is at least one TLS record of its own, with its
    own header, tag and cipher call), large ones cut to TLS_WRITE_BYTES at
    most. The transport encrypts its whole backlog into a memory BIO before
    it sends any of it, so one write of a whole fetch response grows that
    BIO (zeroed, on fresh pages) to the response's size and copies it out
    again; writes of a bounded size keep reusing the same memory."""
    writes: Parts = []
    small: Parts = []
    small_bytes = 0

    def flush() -> None:
        nonlocal small, small_bytes
        if small:
            # One part alone goes as a view of it: a stored batch may be a
            # ByteSlice (native.untracked_view), and the transport's write
            # takes only bytes, bytearray and memoryview.
            writes.append(memoryview(small[0]) if len(small) == 1 else b"".join(small))
            small, small_bytes = [], 0

    for part in parts:
        size = len(part)
        if size == 0:
            continue
        if size < TLS_RECORD_BYTES:
            if small_bytes + size > TLS_WRITE_BYTES:
                flush()
            small.append(part)
            small_bytes += size
            continue
        flush()
        view = memoryview(part)
        writes.extend(
            view[start : start + TLS_WRITE_BYTES] for start in range(0, size, TLS_WRITE_BYTES)
        )
    flush()
    return writes
