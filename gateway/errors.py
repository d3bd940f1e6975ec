"""Typed errors a user can act on; the HTTP and CLI edges turn them into messages."""

from __future__ import annotations


class GatewayError(Exception):
    """Base of every error the gateway raises on purpose."""

    code = "gateway_error"
    http_status = 500


class ConfigError(GatewayError):
    """The configuration file is unusable; names the file and the key."""

    code = "config_error"

    def __init__(self, file: str, key: str | None, message: str) -> None:
        self.file, self.key, self.message = file, key, message
        where = f"{file}: {key}" if key else file
        super().__init__(f"config error in {where}: {message}")


class InvalidNumber(GatewayError):
    """A phone number that cannot be parsed or is not a possible number."""

    code = "invalid_number"
    http_status = 400


class BadRequest(GatewayError):
    """The request is malformed (missing or wrong fields)."""

    code = "bad_request"
    http_status = 400


class NotFound(GatewayError):
    code = "not_found"
    http_status = 404


class Forbidden(GatewayError):
    code = "forbidden"
    http_status = 403


class UnsupportedMediaType(GatewayError):
    code = "unsupported_media_type"
    http_status = 415


class Conflict(GatewayError):
    code = "conflict"
    http_status = 409


class StorageError(GatewayError):
    """The database file cannot be opened or written."""

    code = "storage_error"


class SchemaError(GatewayError):
    """The database schema cannot be used by this version of the code."""

    code = "schema_error"
