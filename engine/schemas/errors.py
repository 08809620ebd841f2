"""The registry's errors: one class per error of Confluent's Schema Registry
API, each with its ``error_code`` (what the REST API answers in its body)
and the HTTP status that goes with it."""

from __future__ import annotations

from typing import ClassVar

from engine.errors import EngineError
from engine.protocol.kafka_code import KafkaCode


class RegistryError(EngineError):
    """Base of the registry's errors (Confluent's RestException)."""

    registry_code: ClassVar[int] = 50001
    http_status: ClassVar[int] = 500


class SubjectNotFound(RegistryError):
    code = KafkaCode.RESOURCE_NOT_FOUND
    registry_code = 40401
    http_status = 404

    def __init__(self, subject: str) -> None:
        super().__init__(f"Subject '{subject}' not found.")
        self.subject = subject


class VersionNotFound(RegistryError):
    code = KafkaCode.RESOURCE_NOT_FOUND
    registry_code = 40402
    http_status = 404

    def __init__(self, subject: str, version: int | str) -> None:
        super().__init__(f"Version {version} not found for subject '{subject}'.")
        self.subject, self.version = subject, version


class SchemaNotFound(RegistryError):
    code = KafkaCode.RESOURCE_NOT_FOUND
    registry_code = 40403
    http_status = 404


class SubjectSoftDeleted(RegistryError):
    code = KafkaCode.RESOURCE_NOT_FOUND
    registry_code = 40404
    http_status = 404

    def __init__(self, subject: str) -> None:
        super().__init__(
            f"Subject '{subject}' was soft deleted. Set permanent=true to delete permanently"
        )
        self.subject = subject


class SubjectNotSoftDeleted(RegistryError):
    code = KafkaCode.INVALID_REQUEST
    registry_code = 40405
    http_status = 404

    def __init__(self, subject: str) -> None:
        super().__init__(
            f"Subject '{subject}' was not deleted first before being permanently deleted"
        )
        self.subject = subject


class VersionSoftDeleted(RegistryError):
    code = KafkaCode.RESOURCE_NOT_FOUND
    registry_code = 40406
    http_status = 404

    def __init__(self, subject: str, version: int) -> None:
        super().__init__(
            f"Subject '{subject}' Version {version} was soft deleted. "
            "Set permanent=true to delete permanently"
        )
        self.subject, self.version = subject, version


class VersionNotSoftDeleted(RegistryError):
    code = KafkaCode.INVALID_REQUEST
    registry_code = 40407
    http_status = 404

    def __init__(self, subject: str, version: int) -> None:
        super().__init__(
            f"Subject '{subject}' Version {version} was not deleted first before being "
            "permanently deleted"
        )
        self.subject, self.version = subject, version


class CompatibilityNotConfigured(RegistryError):
    code = KafkaCode.RESOURCE_NOT_FOUND
    registry_code = 40408
    http_status = 404

    def __init__(self, subject: str) -> None:
        super().__init__(
            f"Subject '{subject}' does not have subject-level compatibility configured"
        )
        self.subject = subject


class ModeNotConfigured(RegistryError):
    code = KafkaCode.RESOURCE_NOT_FOUND
    registry_code = 40409
    http_status = 404

    def __init__(self, subject: str) -> None:
        super().__init__(f"Subject '{subject}' does not have subject-level mode configured")
        self.subject = subject


class IncompatibleSchema(RegistryError):
    code = KafkaCode.POLICY_VIOLATION
    registry_code = 409
    http_status = 409

    def __init__(self, subject: str, messages: list[str]) -> None:
        super().__init__(
            f"Schema being registered is incompatible with an earlier schema for subject "
            f"'{subject}', details: {messages}"
        )
        self.subject, self.messages = subject, messages


class InvalidSchema(RegistryError):
    code = KafkaCode.INVALID_REQUEST
    registry_code = 42201
    http_status = 422


class InvalidVersion(RegistryError):
    code = KafkaCode.INVALID_REQUEST
    registry_code = 42202
    http_status = 422

    def __init__(self, version: str) -> None:
        super().__init__(
            f"The specified version '{version}' is not a valid version id. Allowed values are "
            'between [1, 2^31-1] and the string "latest"'
        )
        self.version = version


class InvalidCompatibilityLevel(RegistryError):
    code = KafkaCode.INVALID_CONFIG
    registry_code = 42203
    http_status = 422

    def __init__(self, level: object) -> None:
        super().__init__(
            f"Invalid compatibility level. Valid values are none, backward, "
            f"forward, full, backward_transitive, forward_transitive, and "
            f"full_transitive, not {level!r}"
        )
        self.level = level


class InvalidMode(RegistryError):
    code = KafkaCode.INVALID_CONFIG
    registry_code = 42204
    http_status = 422

    def __init__(self, mode: object) -> None:
        super().__init__(
            f"Invalid mode. Valid values are READWRITE, READONLY and IMPORT, not {mode!r}"
        )
        self.mode = mode


class OperationNotPermitted(RegistryError):
    code = KafkaCode.POLICY_VIOLATION
    registry_code = 42205
    http_status = 422


class ReferenceExists(RegistryError):
    code = KafkaCode.POLICY_VIOLATION
    registry_code = 42206
    http_status = 422


class Unauthorized(RegistryError):
    code = KafkaCode.SASL_AUTHENTICATION_FAILED
    registry_code = 40101
    http_status = 401


class Forbidden(RegistryError):
    code = KafkaCode.CLUSTER_AUTHORIZATION_FAILED
    registry_code = 40301
    http_status = 403


class BadRequest(RegistryError):
    """A request the API cannot read: malformed JSON, a field of the wrong type."""

    code = KafkaCode.INVALID_REQUEST
    registry_code = 400
    http_status = 400
