"""Who can reach the service, decided before it listens.

Secure by default: with no token the service listens on loopback only
(``make run`` opens the console with no prompt). On any other address a token
is required (``PREDICT_API_TOKEN``); a legacy client that cannot send a header
can still be served with ``PREDICT_ALLOW_ANONYMOUS=1``, and then every start
says so in the log, loudly. Checked by ``python async_api_server.py`` and by
gunicorn's ``on_starting`` hook (``gunicorn.conf.py``), so no way of starting
skips it.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Iterable

from .settings import Settings

ANONYMOUS_WARNING = ("SECURITY WARNING: listening on %s without an API token "
                     "(PREDICT_ALLOW_ANONYMOUS=1): anyone who can reach it can read "
                     "every student's grades and predictions")


class ExposureRefused(RuntimeError):
    """Listening on a non-loopback address without a token (and without the explicit opt-in)."""


def is_loopback(host: str) -> bool:
    """``127.0.0.1``, ``::1``, ``localhost`` and the rest of 127/8; unix sockets too."""
    host = host.strip().strip("[]")
    if host in ("localhost", "") or host.startswith("unix:"):
        return host != ""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name: whatever it resolves to, treat it as reachable


def bind_host(bind: str) -> str:
    """The host part of a gunicorn bind (``127.0.0.1:8080``, ``[::1]:8080``, ``unix:/p``)."""
    if bind.startswith("unix:"):
        return bind
    if bind.startswith("["):
        return bind[1:bind.index("]")]
    return bind.rsplit(":", 1)[0] if ":" in bind else bind


def check_exposure(hosts: Iterable[str], settings: Settings,
                   logger: logging.Logger | None = None) -> None:
    """Refuse to serve a non-loopback address anonymously unless explicitly allowed."""
    exposed = [h for h in hosts if not is_loopback(h)]
    if not exposed or settings.api_token:
        return
    if not settings.allow_anonymous:
        raise ExposureRefused(
            f"拒绝启动：监听 {', '.join(exposed)} 但没有设置访问令牌。请设置 PREDICT_API_TOKEN，"
            "或只监听本机（--host 127.0.0.1）；确需匿名访问时设置 PREDICT_ALLOW_ANONYMOUS=1")
    (logger or logging.getLogger("destination_predictor.service")).warning(
        ANONYMOUS_WARNING, ", ".join(exposed))
