"""A webhook receiver for the notification tests, run as its own process:
``python webhook_receiver.py SECRET`` prints its port, then serves:

- ``/generic/ok``: checks ``X-Predict-Signature`` the way README tells a
  receiver to (HMAC-SHA256 over ``"<timestamp>." + body``); 200, or 401 when it
  does not match;
- ``/generic/fail2``: the same, but answers 500 to the first two attempts of
  each delivery id;
- ``/redirect``: 302 to ``/landing`` (which a sender must never reach);
- ``/slow``: answers after 3 s;
- ``/dingtalk``, ``/wecom``, ``/feishu``: the robots' answers
  (``errcode``/``code`` 0), checking DingTalk's and Feishu's signatures when
  signed;
- ``GET /_requests``: every request received so far, as JSON.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

SECRET = sys.argv[1] if len(sys.argv) > 1 else "receiver-secret"
LOCK = threading.Lock()
SEEN: list[dict[str, Any]] = []
ATTEMPTS: dict[str, int] = {}


def generic_signature_ok(headers: Any, body: bytes) -> bool:
    ts = headers.get("X-Predict-Timestamp", "")
    expected = "sha256=" + hmac.new(SECRET.encode(), ts.encode() + b"." + body,
                                    hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, headers.get("X-Predict-Signature", ""))


def dingtalk_ok(query: dict[str, list[str]]) -> bool:
    ts, sign = query.get("timestamp", [""])[0], query.get("sign", [""])[0]
    mac = hmac.new(SECRET.encode(), f"{ts}\n{SECRET}".encode(), hashlib.sha256).digest()
    return bool(ts) and hmac.compare_digest(base64.b64encode(mac).decode(), sign)


def feishu_ok(body: dict[str, Any]) -> bool:
    ts, sign = str(body.get("timestamp", "")), str(body.get("sign", ""))
    mac = hmac.new(f"{ts}\n{SECRET}".encode(), b"", hashlib.sha256).digest()
    return bool(ts) and hmac.compare_digest(base64.b64encode(mac).decode(), sign)


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args: Any) -> None:
        return None

    def _answer(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body, ensure_ascii=False).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        with LOCK:
            self._answer(200, SEEN)

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        parts = urlsplit(self.path)
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        record: dict[str, Any] = {"path": parts.path, "query": parts.query,
                                  "headers": dict(self.headers.items()),
                                  "body": body.decode("utf-8", "replace"), "at": time.time()}
        status, answer, extra = self._decide(parts.path, parse_qs(parts.query), body, record)
        record["status"] = status
        with LOCK:
            SEEN.append(record)
        if parts.path == "/slow":
            time.sleep(3)
        try:
            self._answer(status, answer, extra)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the sender gave up waiting (the timeout test)

    def _decide(self, path: str, query: dict[str, list[str]], body: bytes,
                record: dict[str, Any]) -> tuple[int, Any, dict[str, str] | None]:
        if path.startswith("/generic/"):
            record["signature_ok"] = generic_signature_ok(self.headers, body)
            if not record["signature_ok"]:
                return 401, {"error": "bad signature"}, None
            if path == "/generic/fail2":
                delivery = self.headers.get("X-Predict-Delivery", "")
                with LOCK:
                    ATTEMPTS[delivery] = ATTEMPTS.get(delivery, 0) + 1
                    n = ATTEMPTS[delivery]
                if n <= 2:
                    return 500, {"error": f"failing attempt {n} on purpose"}, None
            return 200, {"ok": True}, None
        if path == "/redirect":
            return 302, {}, {"Location": "/landing"}
        if path == "/dingtalk":
            if "sign" in query and not dingtalk_ok(query):
                return 200, {"errcode": 310000, "errmsg": "sign not match"}, None
            return 200, {"errcode": 0, "errmsg": "ok"}, None
        if path == "/wecom":
            return 200, {"errcode": 0, "errmsg": "ok"}, None
        if path == "/feishu":
            data = json.loads(body)
            if "sign" in data and not feishu_ok(data):
                return 200, {"code": 19021, "msg": "sign match fail"}, None
            return 200, {"code": 0, "msg": "success", "data": {}}, None
        return 200, {"ok": True}, None  # /landing, /slow and the rest


def main() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    print(server.server_address[1], flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
