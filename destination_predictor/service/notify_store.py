"""Webhooks and their deliveries, durable: SQLAlchemy Core over a URL
(``PREDICT_WEBHOOK_DATABASE_URL``; default a SQLite file in the data dir, or
the task records' PostgreSQL when ``PREDICT_TASKS_DB_URL`` names one).

SQLAlchemy Core rather than ``sqlite3`` like ``store.py``: the same statements
run on PostgreSQL when issue 12 moves the records there, and the import code
already depends on it.

A delivery is one event for one webhook. Its row holds the schedule --
``attempts`` and ``next_attempt_at`` -- so retries survive a restart: the
sender picks up whatever is due, whoever wrote it. Each attempt is recorded
*before* the POST (attempts + 1, next time pushed back by the backoff), so a
crash during the POST is retried later, never in a tight loop; a 2xx marks
the row ``delivered`` in one statement right after the answer, and a
delivered row is never sent again. A crash between the answer and that
statement sends it once more with the same delivery id, which the receiver
uses as its idempotency key.

Several instances on one PostgreSQL (the distributed mode) each run a sender
over the same rows: ``begin_attempt`` is the claim -- an ``UPDATE`` that
matches only while the row still has the attempt count the sender read, so of
two senders that picked the same due row one changes it and goes on, the
other's update matches nothing (PostgreSQL re-checks the condition after the
first commits) and it skips the row. Each attempt is made by one instance.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from . import sqldb

PENDING = "pending"
DELIVERED = "delivered"
FAILED = "failed"
# How much of a receiver's answer is kept for the console.
ANSWER_CHARS = 300

_meta = sa.MetaData()

webhooks = sa.Table(
    "webhooks", _meta,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("name", sa.String(100), nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("url", sa.Text, nullable=False),
    sa.Column("secret", sa.Text, nullable=True),
    sa.Column("events", sa.Text, nullable=False),  # a JSON list
    sa.Column("enabled", sa.Boolean, nullable=False, default=True),
    sa.Column("created_at", sa.Float, nullable=False),
)

deliveries = sa.Table(
    "webhook_deliveries", _meta,
    sa.Column("id", sa.String(36), primary_key=True),  # the delivery id sent to receivers
    sa.Column("webhook_id", sa.String(36), nullable=False),
    sa.Column("webhook_name", sa.String(100), nullable=False),
    sa.Column("event", sa.String(32), nullable=False),
    sa.Column("subject", sa.String(64), nullable=False),  # task or batch id
    sa.Column("message", sa.Text, nullable=False),
    sa.Column("body", sa.Text, nullable=False),  # the event as JSON, fixed for every attempt
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("next_attempt_at", sa.Float, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("last_attempt_at", sa.Float, nullable=True),
    sa.Column("delivered_at", sa.Float, nullable=True),
    sa.Column("last_status", sa.Integer, nullable=True),
    sa.Column("last_answer", sa.Text, nullable=True),
    sa.Column("last_error", sa.Text, nullable=True),
    # One delivery per event per webhook, even if an ending were reported twice.
    sa.UniqueConstraint("webhook_id", "event", "subject", name="one_delivery_per_event"),
)
sa.Index("deliveries_due", deliveries.c.state, deliveries.c.next_attempt_at)
sa.Index("deliveries_newest", deliveries.c.created_at)


@dataclass(frozen=True)
class Webhook:
    id: str
    name: str
    kind: str
    url: str
    secret: str | None
    events: tuple[str, ...]
    enabled: bool
    created_at: float


@dataclass(frozen=True)
class Delivery:
    id: str
    webhook_id: str
    webhook_name: str
    event: str
    subject: str
    message: str
    body: str
    state: str
    attempts: int
    next_attempt_at: float
    created_at: float
    last_attempt_at: float | None
    delivered_at: float | None
    last_status: int | None
    last_answer: str | None
    last_error: str | None


def default_url(data_dir: Path) -> str:
    return f"sqlite:///{data_dir / 'notifications.sqlite3'}"


def open_engine(url: str) -> Engine:
    """The deliveries' database (``sqldb.open_engine``: a 0600 file, it holds the webhooks' secrets)."""
    return sqldb.open_engine(url)


class NotifyStore:
    def __init__(self, url: str) -> None:
        self.engine = open_engine(url)
        _meta.create_all(self.engine)

    def close(self) -> None:
        self.engine.dispose()

    # --- webhooks ---------------------------------------------------------------

    def add_webhook(self, *, name: str, kind: str, url: str, secret: str | None,
                    events: Iterable[str], enabled: bool = True) -> Webhook:
        hook = Webhook(uuid.uuid4().hex[:12], name, kind, url, secret, tuple(events), enabled,
                       time.time())
        with self.engine.begin() as conn:
            conn.execute(webhooks.insert().values(
                id=hook.id, name=name, kind=kind, url=url, secret=secret,
                events=json.dumps(list(hook.events)), enabled=enabled,
                created_at=hook.created_at))
        return hook

    def webhooks(self) -> list[Webhook]:
        with self.engine.connect() as conn:
            rows = conn.execute(webhooks.select().order_by(webhooks.c.created_at)).all()
        return [_webhook(r) for r in rows]

    def webhook(self, webhook_id: str) -> Webhook | None:
        with self.engine.connect() as conn:
            row = conn.execute(webhooks.select().where(webhooks.c.id == webhook_id)).first()
        return _webhook(row) if row is not None else None

    def update_webhook(self, webhook_id: str, *, name: str | None = None,
                       events: Iterable[str] | None = None,
                       enabled: bool | None = None) -> Webhook | None:
        """Change what is given; None if there is no such webhook. Deliveries already
        queued keep going (they were due before the change)."""
        values: dict[str, Any] = {}
        if name is not None:
            values["name"] = name
        if events is not None:
            values["events"] = json.dumps(list(events))
        if enabled is not None:
            values["enabled"] = enabled
        if values:
            with self.engine.begin() as conn:
                conn.execute(webhooks.update().where(webhooks.c.id == webhook_id).values(**values))
        return self.webhook(webhook_id)

    def delete_webhook(self, webhook_id: str) -> bool:
        """Its pending deliveries end as failed; the delivered ones stay as history."""
        with self.engine.begin() as conn:
            gone = conn.execute(webhooks.delete().where(webhooks.c.id == webhook_id)).rowcount
            conn.execute(deliveries.update().where(
                (deliveries.c.webhook_id == webhook_id) & (deliveries.c.state == PENDING)
            ).values(state=FAILED, last_error="Webhook 已删除"))
        return bool(gone)

    # --- deliveries ------------------------------------------------------------

    def enqueue(self, hook: Webhook, delivery_id: str, event_name: str, subject: str,
                message: str, body: str, now: float) -> bool:
        """One row, due now; False when this event was already queued for this webhook."""
        try:
            with self.engine.begin() as conn:
                conn.execute(deliveries.insert().values(
                    id=delivery_id, webhook_id=hook.id, webhook_name=hook.name,
                    event=event_name, subject=subject, message=message, body=body,
                    state=PENDING, attempts=0, next_attempt_at=now, created_at=now))
        except sa.exc.IntegrityError:
            return False
        return True

    def due(self, now: float, limit: int = 20) -> list[Delivery]:
        with self.engine.connect() as conn:
            rows = conn.execute(deliveries.select().where(
                (deliveries.c.state == PENDING) & (deliveries.c.next_attempt_at <= now)
            ).order_by(deliveries.c.next_attempt_at).limit(limit)).all()
        return [Delivery(**r._mapping) for r in rows]

    def next_due_at(self) -> float | None:
        with self.engine.connect() as conn:
            return conn.execute(sa.select(sa.func.min(deliveries.c.next_attempt_at)).where(
                deliveries.c.state == PENDING)).scalar()

    def begin_attempt(self, d: Delivery, now: float, retry_at: float) -> bool:
        """Count the attempt and push the next one back *before* sending; False
        if the row changed meanwhile (delivered, or its webhook deleted)."""
        with self.engine.begin() as conn:
            changed = conn.execute(deliveries.update().where(
                (deliveries.c.id == d.id) & (deliveries.c.state == PENDING)
                & (deliveries.c.attempts == d.attempts)
            ).values(attempts=d.attempts + 1, last_attempt_at=now,
                     next_attempt_at=retry_at)).rowcount
        return bool(changed)

    def finish_attempt(self, delivery_id: str, *, delivered: bool, gave_up: bool,
                       status: int | None, answer: str | None, error: str | None,
                       now: float) -> None:
        state = DELIVERED if delivered else FAILED if gave_up else PENDING
        with self.engine.begin() as conn:
            conn.execute(deliveries.update().where(deliveries.c.id == delivery_id).values(
                state=state, last_status=status,
                last_answer=answer[:ANSWER_CHARS] if answer is not None else None,
                last_error=error, delivered_at=now if delivered else None))

    def deliveries(self, limit: int = 50, subject: str | None = None) -> list[Delivery]:
        """Newest first."""
        query = deliveries.select().order_by(deliveries.c.created_at.desc()).limit(limit)
        if subject is not None:
            query = query.where(deliveries.c.subject == subject)
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
        return [Delivery(**r._mapping) for r in rows]

    def prune(self, before: float) -> int:
        """Forget finished deliveries created before ``before`` (the history does not grow
        without bound); pending ones stay whatever their age."""
        with self.engine.begin() as conn:
            return conn.execute(deliveries.delete().where(
                (deliveries.c.state != PENDING) & (deliveries.c.created_at < before))).rowcount

    def counts(self) -> dict[str, int]:
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(deliveries.c.state, sa.func.count()).group_by(
                deliveries.c.state)).all()
        return {state: int(n) for state, n in rows}


def _webhook(row: Any) -> Webhook:
    m = row._mapping
    return Webhook(m["id"], m["name"], m["kind"], m["url"], m["secret"],
                   tuple(json.loads(m["events"])), bool(m["enabled"]), m["created_at"])
