"""Providers: the carriers' gateways we hand messages to (Twilio, or the local sandbox)."""

from gateway.providers.base import Provider, SendError, SendErrorKind, SendResult

__all__ = ["Provider", "SendError", "SendErrorKind", "SendResult"]
