"""Listeners as Kafka names them: ``listeners = "PLAINTEXT://127.0.0.1:9092,
SASL_SSL://0.0.0.0:9093"`` and ``advertised.listeners`` alike. A listener's
name is its security protocol (Kafka's default listener.security.protocol.map),
which says whether its connections use TLS and whether they authenticate
with SASL before anything else."""

from __future__ import annotations

import enum
from dataclasses import dataclass


class SecurityProtocol(enum.Enum):
    PLAINTEXT = "PLAINTEXT"
    SSL = "SSL"
    SASL_PLAINTEXT = "SASL_PLAINTEXT"
    SASL_SSL = "SASL_SSL"

    @property
    def uses_tls(self) -> bool:
        return self in (SecurityProtocol.SSL, SecurityProtocol.SASL_SSL)

    @property
    def uses_sasl(self) -> bool:
        return self in (SecurityProtocol.SASL_PLAINTEXT, SecurityProtocol.SASL_SSL)


@dataclass(frozen=True)
class Listener:
    """A listener (``name``) at ``host:port``; on an advertised listener,
    the address clients are told to reach."""

    name: str
    host: str
    port: int

    @property
    def protocol(self) -> SecurityProtocol:
        return SecurityProtocol(self.name)

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.name}://{host}:{self.port}"


def parse_listeners(text: str) -> tuple[Listener, ...]:
    """``NAME://host:port,...`` into listeners (an empty host means every
    interface, as in Kafka), no name twice. Whether a name is a security
    protocol and a port a port is ServerConfig's to say, from its table of a
    listener's fields (engine/server/config_ranges.py), in the words it
    refuses a listener made in Python."""
    found: list[Listener] = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        name, sep, address = item.partition("://")
        if not sep:
            raise ValueError(f"listener {item!r} is not NAME://host:port")
        name = name.upper()  # Kafka's ListenerName.normalised
        host, sep, port = address.rpartition(":")
        if not sep:
            raise ValueError(f"listener {item!r} has no port")
        host = host.strip("[]") or "0.0.0.0"
        try:
            number = int(port)
        except ValueError:
            raise ValueError(f"listener {item!r}: {port!r} is not a port") from None
        if any(listener.name == name for listener in found):
            raise ValueError(f"listener {name} is named twice")
        found.append(Listener(name, host, number))
    if not found:
        raise ValueError(f"no listener in {text!r}")
    return tuple(found)
