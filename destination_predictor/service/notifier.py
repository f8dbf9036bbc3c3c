"""Completion notifications: task and batch endings become durable deliveries,
and one sender thread POSTs them to the configured webhooks.

The listeners (``task_finished`` on ``TaskStore.on_finished``,
``batch_finished`` on the batch component's ``on_batch_finished``) only write
a row per subscribed webhook and wake the sender; the HTTP happens in the
sender thread, so a slow receiver never holds up a pool thread or the store.

Each attempt: a short timeout (``PREDICT_WEBHOOK_TIMEOUT_S``), redirects not
followed (a 3xx is a failed attempt: a receiver cannot send our signed body
somewhere else), a 2xx -- and for robots ``errcode``/``code`` 0 -- marks it
delivered. Otherwise it is retried after ``PREDICT_WEBHOOK_BACKOFF_S`` x 2^(n-1)
seconds until ``PREDICT_WEBHOOK_MAX_ATTEMPTS`` attempts were made; the
schedule is the row's ``next_attempt_at`` (``notify_store``), so it survives
a restart. Secrets and webhook URLs (robots carry their key in it) are never
logged: the log names the webhook id and the receiver's host.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import requests
import sqlalchemy as sa

from . import notify_messages as messages
from .logging_setup import log_event
from .notify_store import Delivery, NotifyStore, Webhook

# The sender looks for due deliveries at least this often (it is also woken
# at once when a delivery is queued).
IDLE_POLL_S = 5.0
# How often finished deliveries older than the record retention are deleted.
PRUNE_INTERVAL_S = 3600.0
# How much of an answer is looked at (a robot's JSON verdict fits).
MAX_ANSWER_CHARS = 4096


class Notifier:
    def __init__(self, store: NotifyStore, *, public_url: str | None, timeout_s: float,
                 max_attempts: int, backoff_s: float, logger: logging.Logger,
                 retention_s: float = 30 * 86400.0,
                 clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.public_url = public_url
        self.timeout_s = timeout_s
        self.max_attempts = max_attempts
        self.backoff_s = backoff_s
        self.log = logger
        self.retention_s = retention_s  # finished deliveries are kept this long
        self.clock = clock
        self._pruned_at = 0.0
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        # The environment's HTTPS_PROXY/NO_PROXY and CA bundle apply: a campus network
        # often reaches DingTalk, WeCom and Feishu only through a proxy.
        self._session = requests.Session()

    # --- listeners (quick: a row per webhook, then wake the sender) -----------

    def task_finished(self, task: Any) -> None:
        """``TaskStore.on_finished``: tasks of a batch are told by the batch's own event."""
        if getattr(task, "batch_id", None):
            return
        name = f"task.{task.status.value}"
        self._enqueue(name, task.id, lambda did: messages.task_event(
            task, did, self.public_url, self.clock()))

    def batch_finished(self, batch: dict[str, Any]) -> None:
        """The batch component's ``on_batch_finished``: one event for the whole batch."""
        name = f"batch.{batch['state']}"
        self._enqueue(name, str(batch["batch_id"]), lambda did: messages.batch_event(
            batch, did, self.public_url, self.clock()))

    def send_test(self, hook: Webhook) -> str:
        """Queue a test message to one webhook (enabled or not); returns the delivery id."""
        did = str(uuid.uuid4())
        event = messages.ping_event(did, self.public_url, self.clock())
        self.store.enqueue(hook, did, "webhook.test", "test-" + did[:8], event["message"],
                           messages.event_body(event), self.clock())
        self._wake.set()
        return did

    def _enqueue(self, name: str, subject: str, build: Callable[[str], dict[str, Any]]) -> None:
        now = self.clock()
        queued = 0
        for hook in self.store.webhooks():
            if not hook.enabled or name not in hook.events:
                continue
            did = str(uuid.uuid4())
            event = build(did)
            if self.store.enqueue(hook, did, name, subject, event["message"],
                                  messages.event_body(event), now):
                queued += 1
        if queued:
            log_event(self.log, "webhook.queued", subject=subject, kind=name, deliveries=queued)
            self._wake.set()

    # --- the sender thread -----------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="predict-notifier", daemon=True)
        self._thread.start()

    def stop(self, wait_s: float = 10.0) -> None:
        """An attempt in flight ends within the timeout; its row says what happened,
        or it is retried after the restart."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(wait_s)
        self._session.close()
        self.store.close()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.send_due()
                self._prune_now_and_then()
                wait = self._idle_wait()
            except sa.exc.SQLAlchemyError:
                self.log.exception("event=webhook.store_error")
                wait = IDLE_POLL_S
            except Exception:  # noqa: BLE001 - keep sending next time; the error is logged
                self.log.exception("event=webhook.sender_error")
                wait = IDLE_POLL_S
            self._wake.wait(wait)
            self._wake.clear()

    def _prune_now_and_then(self) -> None:
        now = self.clock()
        if now - self._pruned_at < PRUNE_INTERVAL_S:
            return
        self._pruned_at = now
        removed = self.store.prune(now - self.retention_s)
        if removed:
            log_event(self.log, "webhook.pruned", deliveries=removed)

    def _idle_wait(self) -> float:
        due = self.store.next_due_at()
        if due is None:
            return IDLE_POLL_S
        return min(IDLE_POLL_S, max(0.0, due - self.clock()))

    def send_due(self) -> int:
        """Send every delivery that is due now (one at a time); returns how many were tried."""
        tried = 0
        while not self._stop.is_set():
            batch = self.store.due(self.clock())
            if not batch:
                return tried
            for d in batch:
                if self._stop.is_set():
                    return tried
                self._attempt(d)
                tried += 1
        return tried

    def retry_delay(self, attempt: int) -> float:
        """Seconds after attempt ``attempt`` (1-based) before the next one."""
        return self.backoff_s * 2 ** (attempt - 1)

    def _attempt(self, d: Delivery) -> None:
        now = self.clock()
        attempt = d.attempts + 1
        if attempt > self.max_attempts:  # fewer attempts configured since, or a crash mid-way
            self.store.finish_attempt(d.id, delivered=False, gave_up=True, status=d.last_status,
                                      answer=d.last_answer, error=d.last_error or "尝试次数已用完",
                                      now=now)
            return
        if not self.store.begin_attempt(d, now, now + self.retry_delay(attempt)):
            return
        hook = self.store.webhook(d.webhook_id)
        if hook is None:
            self.store.finish_attempt(d.id, delivered=False, gave_up=True, status=None,
                                      answer=None, error="Webhook 已删除", now=now)
            return
        req = messages.render(hook.kind, hook.url, hook.secret, d.id, d.body, attempt, now)
        status, answer, error = self._post(req)
        delivered = error is None and status is not None and 200 <= status < 300
        if delivered:
            ok, why = messages.robot_accepted(hook.kind, answer or "")
            delivered, error = ok, why
        elif error is None:
            error = _status_error(status)
        gave_up = not delivered and attempt >= self.max_attempts
        self.store.finish_attempt(d.id, delivered=delivered, gave_up=gave_up, status=status,
                                  answer=answer, error=error, now=self.clock())
        log_event(self.log, "webhook.delivered" if delivered else (
            "webhook.gave_up" if gave_up else "webhook.attempt_failed"),
            delivery_id=d.id, webhook_id=hook.id, host=urlsplit(hook.url).hostname, attempt=attempt,
            status=status)

    def _post(self, req: messages.OutgoingRequest) -> tuple[int | None, str | None, str | None]:
        """(status, the start of the answer, error text); never raises for the network."""
        try:
            resp = self._session.post(req.url, data=req.body, headers=req.headers,
                                      timeout=self.timeout_s, allow_redirects=False)
            return resp.status_code, resp.text[:MAX_ANSWER_CHARS], None
        except requests.Timeout:
            return None, None, f"超时（{self.timeout_s:g} 秒内没有应答）"
        except requests.ConnectionError:
            return None, None, "无法连接接收方"
        except requests.RequestException as exc:
            return None, None, f"请求失败：{type(exc).__name__}"


def _status_error(status: int | None) -> str:
    if status is not None and 300 <= status < 400:
        return f"接收方要求重定向（HTTP {status}），不会跟随"
    return f"接收方应答 HTTP {status}"
