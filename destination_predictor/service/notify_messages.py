"""What a completion notification says, and how each kind of receiver is signed.

Pure functions, no network and no database: ``task_event``/``batch_event``
turn a finished task or batch into the event (a JSON-able dict, stored once
per delivery so every attempt sends the same body); ``render`` turns an event
into the request for one webhook kind:

- ``generic``: the event itself as JSON, signed in headers (``sign_generic``):
  ``X-Predict-Signature: sha256=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>``
  with ``X-Predict-Timestamp`` (Unix seconds) and ``X-Predict-Delivery`` (the
  delivery id: the same on every attempt, the receiver's idempotency key);
- ``dingtalk`` (钉钉自定义机器人): ``{"msgtype": "markdown", ...}``; with a secret,
  ``timestamp`` (ms) and ``sign`` = base64(HMAC-SHA256(secret, "<ts>\\n<secret>"))
  go into the URL's query;
- ``wecom`` (企业微信群机器人): ``{"msgtype": "markdown", ...}``; the key in its
  URL is its only credential (no signing scheme);
- ``feishu`` (飞书自定义机器人): ``{"msg_type": "text", ...}``; with a secret,
  ``timestamp`` (s) and ``sign`` = base64(HMAC-SHA256(key="<ts>\\n<secret>", msg=""))
  go into the body.

Robots answer HTTP 200 also when they refuse a message (a bad signature, a
missing keyword); ``robot_accepted`` reads their ``errcode``/``code``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

KINDS = ("generic", "dingtalk", "wecom", "feishu")
TASK_EVENTS = ("task.completed", "task.failed", "task.cancelled")
BATCH_EVENTS = ("batch.completed", "batch.partial", "batch.failed", "batch.cancelled")
EVENTS = (*TASK_EVENTS, *BATCH_EVENTS, "webhook.test")
# What a webhook hears unless it says otherwise: a person cancelled it themselves.
DEFAULT_EVENTS = ("task.completed", "task.failed", "batch.completed", "batch.partial",
                  "batch.failed")

SIGNATURE_HEADER = "X-Predict-Signature"
TIMESTAMP_HEADER = "X-Predict-Timestamp"
DELIVERY_HEADER = "X-Predict-Delivery"
EVENT_HEADER = "X-Predict-Event"

_STATE_TEXT = {"completed": "预测完成", "failed": "预测失败", "cancelled": "预测已取消"}
_BATCH_TEXT = {"completed": "批量预测完成", "partial": "批量预测部分完成",
               "failed": "批量预测失败", "cancelled": "批量预测已取消"}


@dataclass(frozen=True)
class OutgoingRequest:
    """One HTTP POST, ready to send."""

    url: str
    body: bytes
    headers: dict[str, str]


# --- events -------------------------------------------------------------------

def _iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _links(public_url: str | None, paths: dict[str, str]) -> dict[str, str]:
    """Absolute links only from the configured public address, never from a request's Host."""
    if not public_url:
        return {}
    base = public_url.rstrip("/")
    return {name: base + path for name, path in paths.items()}


def _major_counts(summary: dict[str, Any] | None) -> list[dict[str, Any]]:
    out = []
    for m in (summary or {}).get("majors") or []:
        out.append({"major": m.get("major"), "code": m.get("code"),
                    "students": m.get("students"), "destinations": m.get("destinations")})
    return out


def _students(summary: dict[str, Any] | None) -> int | None:
    value = (summary or {}).get("students")
    return int(value) if isinstance(value, int | float) else None


def format_duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    s = int(round(seconds))
    if s < 60:
        return f"{s} 秒"
    if s < 3600:
        return f"{s // 60} 分 {s % 60} 秒"
    return f"{s // 3600} 小时 {s % 3600 // 60} 分"


def task_event(task: Any, delivery_id: str, public_url: str | None, now: float) -> dict[str, Any]:
    """The event for a finished task (``service.task.Task``); ``state`` is
    ``completed``, ``failed`` or ``cancelled``."""
    state = task.status.value
    duration = None
    if task.started_at is not None and task.finished_at is not None:
        duration = round(task.finished_at - task.started_at, 3)
    majors = _major_counts(task.summary)
    body: dict[str, Any] = {
        "event": f"task.{state}",
        "delivery_id": delivery_id,
        "occurred_at": _iso(task.finished_at or now),
        "task": {
            "id": task.id, "file_name": task.file_name, "year": task.year,
            "major": task.major, "state": state, "students": _students(task.summary),
            "majors": majors, "error": task.error, "error_code": task.error_code,
            "duration_s": duration, "result_files": list(task.result_files),
            "created_at": _iso(task.created_at), "finished_at": _iso(task.finished_at),
            "model_version": task.model_version, "demo_model": task.demo_model,
        },
        "links": _links(public_url, {
            "console": "/", "status": f"/api/task/status/{task.id}",
            **({"results_zip": f"/api/task/{task.id}/results.zip"} if state == "completed"
               else {})}),
    }
    body["message"] = task_message(body["task"])
    return body


def task_message(t: dict[str, Any]) -> str:
    """One Chinese line, e.g. "2024 级预测完成：4 个专业 1,203 名学生，用时 9 秒"."""
    head = f"{t['year']} 级{_STATE_TEXT.get(t['state'], t['state'])}"
    if t["state"] == "completed":
        n_majors = len(t["majors"])
        students = t["students"] if t["students"] is not None else 0
        return (f"{head}：{n_majors} 个专业 {students:,} 名学生，用时 "
                f"{format_duration(t['duration_s'])}（{t['file_name']}）")
    return f"{head}：{t['file_name']}——{t['error'] or '未知原因'}"


def batch_event(batch: dict[str, Any], delivery_id: str, public_url: str | None,
                now: float) -> dict[str, Any]:
    """The event for a finished batch (the dict ``on_batch_finished`` gives:
    batch_id, state, counts, tasks, year, created_at, finished_at)."""
    state = str(batch["state"])
    tasks = []
    for t in batch.get("tasks") or []:
        tasks.append({"task_id": t.get("task_id"), "file": t.get("file"),
                      "status": t.get("status"), "error": t.get("error"),
                      "students": _students(t.get("summary")),
                      "majors": _major_counts(t.get("summary"))})
    students = sum(t["students"] or 0 for t in tasks)
    body: dict[str, Any] = {
        "event": f"batch.{state}",
        "delivery_id": delivery_id,
        "occurred_at": _iso_any(batch.get("finished_at")) or _iso(now),
        "batch": {
            "id": batch["batch_id"], "state": state, "year": batch.get("year"),
            "counts": dict(batch.get("counts") or {}), "students": students, "tasks": tasks,
            "created_at": _iso_any(batch.get("created_at")),
            "finished_at": _iso_any(batch.get("finished_at")),
        },
        "links": _links(public_url, {
            "console": "/", "status": f"/api/batch/status/{batch['batch_id']}",
            **({"results_zip": f"/api/batch/result/{batch['batch_id']}"}
               if any(t["status"] == "completed" for t in tasks) else {})}),
    }
    body["message"] = batch_message(body["batch"])
    return body


def _iso_any(value: Any) -> str | None:
    """Batch times may come as epoch seconds or already as ISO text."""
    if isinstance(value, int | float):
        return _iso(float(value))
    return str(value) if value is not None else None


def batch_message(b: dict[str, Any]) -> str:
    n = len(b["tasks"])
    ok = sum(1 for t in b["tasks"] if t["status"] == "completed")
    head = f"{b['year']} 级{_BATCH_TEXT.get(b['state'], b['state'])}" if b["year"] else \
        _BATCH_TEXT.get(b["state"], b["state"])
    if b["state"] == "completed":
        return f"{head}：{n} 个文件全部成功，共 {b['students']:,} 名学生"
    if b["state"] == "partial":
        return f"{head}：{n} 个文件中 {ok} 个成功、{n - ok} 个未成功，共 {b['students']:,} 名学生"
    if b["state"] == "failed":
        return f"{head}：{n} 个文件全部未成功"
    return f"{head}：{n} 个文件中 {ok} 个已完成"


def ping_event(delivery_id: str, public_url: str | None, now: float) -> dict[str, Any]:
    """What ``POST /api/webhooks/<id>/test`` sends."""
    return {"event": "webhook.test", "delivery_id": delivery_id, "occurred_at": _iso(now),
            "message": "学生去向预测服务：这是一条测试通知，收到即表示配置正确",
            "links": _links(public_url, {"console": "/"})}


def event_body(event: dict[str, Any]) -> str:
    """The stored (and, for generic webhooks, sent) text: the same bytes on every attempt."""
    return json.dumps(event, ensure_ascii=False, sort_keys=True, separators=(",", ":"))


# --- requests per kind --------------------------------------------------------

def sign_generic(secret: str, timestamp: str, body: bytes) -> str:
    """``sha256=`` + hex HMAC-SHA256 over ``"<timestamp>." + body``."""
    mac = hmac.new(secret.encode("utf-8"), timestamp.encode("ascii") + b"." + body,
                   hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def dingtalk_sign(secret: str, timestamp_ms: str) -> str:
    """DingTalk: base64(HMAC-SHA256(key=secret, msg="<ts>\\n<secret>")); url-encoded by the caller."""
    mac = hmac.new(secret.encode("utf-8"), f"{timestamp_ms}\n{secret}".encode(),
                   hashlib.sha256)
    return base64.b64encode(mac.digest()).decode("ascii")


def feishu_sign(secret: str, timestamp_s: str) -> str:
    """Feishu: base64(HMAC-SHA256(key="<ts>\\n<secret>", msg=b""))."""
    mac = hmac.new(f"{timestamp_s}\n{secret}".encode(), b"", hashlib.sha256)
    return base64.b64encode(mac.digest()).decode("ascii")


# A robot refuses a message over its limit (WeCom markdown: 4,096 bytes; DingTalk
# and Feishu: about 20 KB); lines name files and errors, so each is cut too.
MAX_LINE_CHARS = 150
MAX_ROBOT_BYTES = {"wecom": 4000, "dingtalk": 18000, "feishu": 18000}


def _cut(text: str, max_bytes: int) -> str:
    """At most ``max_bytes`` of UTF-8, cut at a character boundary, with "…" when cut."""
    data = text.encode("utf-8")
    if len(data) <= max_bytes:
        return text
    return data[:max_bytes - 3].decode("utf-8", "ignore") + "…"


def _line(text: str) -> str:
    return text if len(text) <= MAX_LINE_CHARS else text[:MAX_LINE_CHARS - 1] + "…"


def _markdown(event: dict[str, Any], *, wecom: bool) -> str:
    lines = [f"**{event['message']}**"]
    task = event.get("task")
    if task:
        for m in task["majors"][:12]:
            lines.append(f"> {m['major']}：{m['students']} 名学生")
    batch = event.get("batch")
    if batch:
        for t in batch["tasks"][:12]:
            status = _STATE_TEXT.get(t["status"], t["status"])
            lines.append(f"> {t['file']}：{status}" + (f"（{t['error']}）" if t["error"] else ""))
    if event["links"].get("console"):
        lines.append(f"[打开控制台]({event['links']['console']})")
    text = ("\n" if wecom else "\n\n").join(_line(x) for x in lines)
    return _cut(text, MAX_ROBOT_BYTES["wecom" if wecom else "dingtalk"])


def _with_query(url: str, extra: dict[str, str]) -> str:
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True) + list(extra.items())
    return urlunsplit(parts._replace(query=urlencode(query)))


def render(kind: str, url: str, secret: str | None, delivery_id: str, stored_body: str,
           attempt: int, now: float) -> OutgoingRequest:
    """The request for one attempt of one delivery (a fresh timestamp and signature each time)."""
    event = json.loads(stored_body)
    headers = {"Content-Type": "application/json; charset=utf-8",
               "User-Agent": "destination-predictor-webhook/1",
               DELIVERY_HEADER: delivery_id, EVENT_HEADER: event["event"],
               "X-Predict-Attempt": str(attempt)}
    if kind == "generic":
        body = stored_body.encode("utf-8")
        ts = str(int(now))
        headers[TIMESTAMP_HEADER] = ts
        if secret:
            headers[SIGNATURE_HEADER] = sign_generic(secret, ts, body)
        return OutgoingRequest(url, body, headers)
    if kind == "dingtalk":
        payload: dict[str, Any] = {"msgtype": "markdown", "markdown": {
            "title": event["message"][:60], "text": _markdown(event, wecom=False)}}
        if secret:
            ts_ms = str(int(now * 1000))
            url = _with_query(url, {"timestamp": ts_ms, "sign": dingtalk_sign(secret, ts_ms)})
    elif kind == "wecom":
        payload = {"msgtype": "markdown", "markdown": {"content": _markdown(event, wecom=True)}}
    elif kind == "feishu":
        text = event["message"]
        if event["links"].get("console"):
            text += "\n" + event["links"]["console"]
        payload = {"msg_type": "text", "content": {"text": _cut(text, MAX_ROBOT_BYTES["feishu"])}}
        if secret:
            ts_s = str(int(now))
            payload = {"timestamp": ts_s, "sign": feishu_sign(secret, ts_s), **payload}
    else:
        raise ValueError(f"unknown webhook kind {kind!r}")
    return OutgoingRequest(url, json.dumps(payload, ensure_ascii=False).encode("utf-8"), headers)


def robot_accepted(kind: str, answer: str) -> tuple[bool, str | None]:
    """Whether a robot's 2xx answer means it took the message (and why not)."""
    if kind == "generic":
        return True, None
    try:
        data = json.loads(answer)
    except ValueError:
        return False, "机器人的应答不是 JSON"
    if not isinstance(data, dict):
        return False, "机器人的应答不是 JSON 对象"
    code = data.get("errcode") if kind in ("dingtalk", "wecom") else data.get(
        "code", data.get("StatusCode"))
    if code == 0:
        return True, None
    msg = data.get("errmsg") or data.get("msg") or ""
    return False, f"机器人拒绝了消息：{code} {msg}".strip()


def redact_url(url: str) -> str:
    """For display and logs: robots carry their credential in the URL (DingTalk's
    ``access_token``, WeCom's ``key``, Feishu's hook path), so query values and
    long path segments are masked."""
    parts = urlsplit(url)
    path = "/".join(seg if len(seg) < 16 else seg[:4] + "…" for seg in parts.path.split("/"))
    query = "&".join(f"{k}=***" for k, _ in parse_qsl(parts.query, keep_blank_values=True))
    host = parts.hostname or ""
    if parts.port:
        host += f":{parts.port}"
    return urlunsplit((parts.scheme, host, path, query, ""))
