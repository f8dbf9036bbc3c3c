"""``/api/webhooks``: the administrator's completion notifications (``service.notifier``).

- ``GET /api/webhooks``: every webhook; its secret never (``secret_set``), its
  URL with the credential masked (robots carry their key in it);
- ``POST /api/webhooks``: JSON ``{"url", "kind", "name", "secret", "events",
  "enabled"}``; a ``generic`` webhook without a secret gets a generated one,
  shown in this answer only;
- ``PATCH /api/webhooks/<id>``: JSON ``{"name", "events", "enabled"}`` (a new URL or
  secret is a new webhook: delete and add); ``DELETE /api/webhooks/<id>``;
  ``POST /api/webhooks/<id>/test``: queue a test message;
- ``GET /api/webhook-deliveries``: the newest deliveries with their last answer
  (``limit``, ``subject`` = a task or batch id).

Webhooks are configured here by the administrator, never by the URL of an
upload. With ``PREDICT_API_TOKEN`` set the app-wide token check applies;
without one these routes answer only on the server itself (loopback), because
whoever sets a webhook makes the service send requests where they choose.
"""

from __future__ import annotations

import secrets
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from flask import Blueprint, Response, current_app, request

from .auth import may_see_details
from .errors import ServiceError
from .manager import current_manager
from .notifier import Notifier
from .notify_messages import DEFAULT_EVENTS, EVENTS, KINDS, redact_url
from .notify_store import PENDING, Delivery, Webhook
from .responses import ok

NOTIFIER_KEY = "predict_notifier"
MAX_WEBHOOKS = 20
MAX_URL_CHARS = 2000
MAX_DELIVERIES = 200
_FIELDS = {"url", "kind", "name", "secret", "events", "enabled"}
_CHANGEABLE = {"name", "events", "enabled"}
_KIND_NAMES = {"generic": "通用 Webhook", "dingtalk": "钉钉机器人", "wecom": "企业微信机器人",
               "feishu": "飞书机器人"}

bp = Blueprint("webhooks", __name__, url_prefix="/api")


def current_notifier() -> Notifier:
    return current_app.extensions[NOTIFIER_KEY]


@bp.before_request
def _administrators_only() -> None:
    if not may_see_details(current_manager().settings.api_token):
        raise ServiceError("FORBIDDEN", "管理完成通知需要访问令牌：请设置 PREDICT_API_TOKEN，或在服务器本机操作")


def _iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts).astimezone().isoformat(timespec="seconds")


def public_webhook(h: Webhook) -> dict[str, Any]:
    return {"id": h.id, "name": h.name, "kind": h.kind, "url": redact_url(h.url),
            "secret_set": bool(h.secret), "events": list(h.events), "enabled": h.enabled,
            "created_at": _iso(h.created_at)}


def public_delivery(d: Delivery, max_attempts: int) -> dict[str, Any]:
    return {"id": d.id, "webhook_id": d.webhook_id, "webhook_name": d.webhook_name,
            "event": d.event, "subject": d.subject, "message": d.message, "state": d.state,
            "attempts": d.attempts, "max_attempts": max_attempts,
            "next_attempt_at": _iso(d.next_attempt_at) if d.state == PENDING else None,
            "created_at": _iso(d.created_at), "last_attempt_at": _iso(d.last_attempt_at),
            "delivered_at": _iso(d.delivered_at), "last_status": d.last_status,
            "last_answer": d.last_answer, "last_error": d.last_error}


def _bad(message: str) -> ServiceError:
    return ServiceError("BAD_WEBHOOK", message)


def _text(body: dict[str, Any], key: str, max_len: int) -> str | None:
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > max_len:
        raise _bad(f"{key} 必须是不超过 {max_len} 个字符的文本")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate ("\ud800") from a JSON escape
        raise _bad(f"{key} 含有无效的字符") from None
    return value.strip() or None


def _url(raw: str | None) -> str:
    if raw is None:
        raise _bad("缺少接收地址 url")
    if len(raw) > MAX_URL_CHARS:
        raise _bad(f"url 不能超过 {MAX_URL_CHARS} 个字符")
    try:
        parts = urlsplit(raw)
        host = parts.hostname
        parts.port  # noqa: B018 - raises ValueError on a port that is not a number
    except ValueError:
        raise _bad("url 不是合法的地址") from None
    if parts.scheme not in ("http", "https") or not host:
        raise _bad("url 必须是 http:// 或 https:// 开头的完整地址")
    if parts.username or parts.password:
        raise _bad("url 里不能带用户名或密码")
    return raw


def _events(value: Any) -> tuple[str, ...]:
    if value is None:
        return DEFAULT_EVENTS
    allowed = [e for e in EVENTS if e != "webhook.test"]
    if (not isinstance(value, list) or not value
            or not all(isinstance(e, str) and e in allowed for e in value)):
        raise _bad("events 必须是非空列表，可选：" + "、".join(allowed))
    return tuple(dict.fromkeys(value))


def _json_object() -> dict[str, Any]:
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise ServiceError("BAD_JSON", "请求体必须是 JSON 对象，例如 {\"kind\": \"dingtalk\", \"url\": \"https://…\"}")
    nulls = sorted(k for k, v in body.items() if v is None)
    if nulls:
        raise _bad("不需要的字段请省略，不能为 null：" + "、".join(nulls[:5]))
    return body


def _enabled(body: dict[str, Any]) -> bool | None:
    enabled = body.get("enabled")
    if enabled is not None and not isinstance(enabled, bool):
        raise _bad("enabled 只能是 true 或 false")
    return enabled


@bp.get("/webhooks")
def list_webhooks() -> tuple[Response, int]:
    hooks = current_notifier().store.webhooks()
    return ok({"webhooks": [public_webhook(h) for h in hooks]})


@bp.post("/webhooks")
def add_webhook() -> tuple[Response, int]:
    body = _json_object()
    unknown = sorted(set(body) - _FIELDS)
    if unknown:
        raise _bad("不认识的字段：" + "、".join(unknown[:5]))
    kind = body.get("kind", "generic")
    if kind not in KINDS:
        raise _bad("kind 只能是 " + "、".join(KINDS))
    url = _url(_text(body, "url", MAX_URL_CHARS))
    secret = _text(body, "secret", 200)
    if kind == "wecom" and secret:
        raise _bad("企业微信群机器人没有签名密钥（地址里的 key 就是凭据），请不要填写 secret")
    enabled = _enabled(body)
    events = _events(body.get("events"))
    name = _text(body, "name", 100) or _KIND_NAMES[kind]
    notifier = current_notifier()
    if len(notifier.store.webhooks()) >= MAX_WEBHOOKS:
        raise _bad(f"最多配置 {MAX_WEBHOOKS} 个 Webhook，请先删除不用的")
    generated = None
    if kind == "generic" and not secret:
        secret = generated = secrets.token_urlsafe(32)
    hook = notifier.store.add_webhook(name=name, kind=kind, url=url, secret=secret,
                                      events=events, enabled=enabled is not False)
    data: dict[str, Any] = {"webhook": public_webhook(hook)}
    if generated:
        data["secret"] = generated  # shown once: the receiver needs it to check signatures
    return ok(data, 201)


def _webhook(webhook_id: str) -> Webhook:
    hook = current_notifier().store.webhook(webhook_id)
    if hook is None:
        raise ServiceError("WEBHOOK_NOT_FOUND", "没有这个 Webhook")
    return hook


@bp.patch("/webhooks/<webhook_id>")
def change_webhook(webhook_id: str) -> tuple[Response, int]:
    hook = _webhook(webhook_id)
    body = _json_object()
    unknown = sorted(set(body) - _CHANGEABLE)
    if unknown:
        raise _bad("只能修改 name、events、enabled；地址或密钥变了请删除后重新添加（不认识或不能修改的字段："
                   + "、".join(unknown[:5]) + "）")
    events = _events(body["events"]) if "events" in body else None
    changed = current_notifier().store.update_webhook(
        hook.id, name=_text(body, "name", 100), events=events, enabled=_enabled(body))
    if changed is None:  # deleted meanwhile
        raise ServiceError("WEBHOOK_NOT_FOUND", "没有这个 Webhook")
    return ok({"webhook": public_webhook(changed)})


@bp.delete("/webhooks/<webhook_id>")
def delete_webhook(webhook_id: str) -> tuple[Response, int]:
    hook = _webhook(webhook_id)
    current_notifier().store.delete_webhook(hook.id)
    return ok({"deleted": hook.id})


@bp.post("/webhooks/<webhook_id>/test")
def test_webhook(webhook_id: str) -> tuple[Response, int]:
    delivery_id = current_notifier().send_test(_webhook(webhook_id))
    return ok({"delivery_id": delivery_id, "message": "测试通知已排队发送"}, 202)


@bp.get("/webhook-deliveries")
def list_deliveries() -> tuple[Response, int]:
    raw = request.args.get("limit", "50")
    if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= MAX_DELIVERIES:
        raise ServiceError("BAD_LIMIT", f"limit 必须是 1 到 {MAX_DELIVERIES} 之间的整数")
    subject = request.args.get("subject") or None
    notifier = current_notifier()
    rows = notifier.store.deliveries(int(raw), subject=subject)
    return ok({"deliveries": [public_delivery(d, notifier.max_attempts) for d in rows],
               "counts": notifier.store.counts()})
