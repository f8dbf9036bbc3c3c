"""API token: with ``PREDICT_API_TOKEN`` set, every ``/api/*`` request must
carry it as ``Authorization: Bearer <token>`` or ``X-API-Key: <token>``.

Checked for the whole app (not per blueprint) so routes added later by other
blueprints under ``/api/`` are protected without remembering to opt in.
``/health`` stays open for load balancers and monitors.
"""

from __future__ import annotations

import hmac

from flask import Flask, request

from .errors import ServiceError
from .exposure import is_loopback


def presented_token() -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    key = request.headers.get("X-API-Key", "").strip()
    return key or None


def token_matches(presented: str | None, expected: str) -> bool:
    """Constant time, so the response time does not reveal a matching prefix."""
    if presented is None:
        return False
    return hmac.compare_digest(presented.encode("utf-8"), expected.encode("utf-8"))


def may_see_details(token: str | None) -> bool:
    """Whether this request may see the service's internals (pid, disk, counts,
    paths) on an open route such as ``/health``: with the right token, or --
    when no token is configured -- only from loopback."""
    if token:
        return token_matches(presented_token(), token)
    return is_loopback(request.remote_addr or "")


def init_app(app: Flask, token: str | None) -> None:
    if not token:
        return

    @app.before_request
    def _require_token() -> None:
        # /api/openapi.json describes the API and holds no data: readable without a token.
        if request.path == "/api/openapi.json" or not (request.path == "/api" or request.path.startswith("/api/")):
            return
        presented = presented_token()
        if presented is None:
            raise ServiceError("UNAUTHORIZED", "缺少访问令牌（Authorization: Bearer 或 X-API-Key）",
                           {"WWW-Authenticate": 'Bearer realm="predict"'})
        if not token_matches(presented, token):
            raise ServiceError("INVALID_TOKEN", "访问令牌无效",
                           {"WWW-Authenticate": 'Bearer realm="predict", error="invalid_token"'})
