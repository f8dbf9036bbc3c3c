"""Talking to the service over HTTP: the client library and the end-to-end check."""

from .api import ApiClient, ApiError

__all__ = ["ApiClient", "ApiError"]
