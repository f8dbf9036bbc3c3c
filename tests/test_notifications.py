"""Completion notifications (``service.notifier``, ``/api/webhooks``) against a
real receiver process (``support/webhook_receiver.py``): signed generic
webhooks retried with backoff, redirects not followed, a short timeout, the
DingTalk / WeCom / Feishu robots' payloads and signatures, batch endings,
the token on management -- and, with gunicorn, a restart between two attempts.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import io
import json
import logging
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from flask.testing import FlaskClient
from support.live_server import LiveServer
from support.paths import MODELS_DIR, PLANS_DIR, REPO
from support.service import FakeRunner, grade_workbook, start, tiny_xlsx, wait_for

from destination_predictor.service import notify_messages as messages
from destination_predictor.service.notifier import Notifier
from destination_predictor.service.notify_store import NotifyStore, default_url
from destination_predictor.service.task import COMPLETED, Task

SECRET = "receiver-secret-5d1c"
TOKEN = "notify-token"
RECEIVER = Path(__file__).parent / "support" / "webhook_receiver.py"


class Receiver:
    def __init__(self, proc: subprocess.Popen[str], port: int) -> None:
        self.proc = proc
        self.base = f"http://127.0.0.1:{port}"

    def seen(self, path: str | None = None) -> list[dict[str, Any]]:
        got = requests.get(self.base + "/_requests", timeout=5).json()
        return [r for r in got if path is None or r["path"] == path]


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    proc = subprocess.Popen([sys.executable, str(RECEIVER), SECRET], stdout=subprocess.PIPE,
                            text=True, stdin=subprocess.DEVNULL)
    try:
        assert proc.stdout is not None
        yield Receiver(proc, int(proc.stdout.readline()))
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(10)


@pytest.fixture
def notify_app(app_config: dict[str, Any], make_app: Any) -> tuple[FlaskClient, Any]:
    app_config.update(PREDICT_WEBHOOK_BACKOFF_S=0.05, PREDICT_WEBHOOK_TIMEOUT_S=1,
                      PREDICT_PUBLIC_URL="https://predict.example.edu.cn/")
    app = make_app(runner=FakeRunner(hold=False))
    return app.test_client(), app


def add_hook(client: FlaskClient, url: str, **fields: Any) -> dict[str, Any]:
    r = client.post("/api/webhooks", json={"url": url, **fields})
    assert r.status_code == 201, r.json
    return r.json["data"]


def deliveries(client: FlaskClient, until: Callable[[list[dict[str, Any]]], bool],
               timeout: float = 20) -> list[dict[str, Any]]:
    end = time.monotonic() + timeout
    while True:
        got = client.get("/api/webhook-deliveries").json["data"]["deliveries"]
        if until(got):
            return got
        assert time.monotonic() < end, got
        time.sleep(0.05)


def settled(got: list[dict[str, Any]]) -> bool:
    return bool(got) and all(d["state"] != "pending" for d in got)


def run_task(client: FlaskClient) -> str:
    tid = start(client, tiny_xlsx()).json["data"]["task_id"]
    wait_for(client, tid, lambda d: d["status"] == "completed")
    return tid


def test_signed_delivery_is_retried_until_the_receiver_accepts_it(
        notify_app: tuple[FlaskClient, Any], receiver: Receiver) -> None:
    client, app = notify_app
    hook = add_hook(client, receiver.base + "/generic/fail2", secret=SECRET, name="教务处")
    tid = run_task(client)
    [d] = deliveries(client, settled)
    assert (d["state"], d["attempts"], d["last_status"]) == ("delivered", 3, 200), d
    assert d["webhook_name"] == "教务处" and d["event"] == "task.completed"
    got = [r for r in receiver.seen("/generic/fail2")
           if r["headers"]["X-Predict-Delivery"] == d["id"]]
    assert [r["status"] for r in got] == [500, 500, 200]
    assert all(r["signature_ok"] for r in got)
    assert len({r["body"] for r in got}) == 1  # the same body, re-signed each time
    assert [r["headers"]["X-Predict-Attempt"] for r in got] == ["1", "2", "3"]
    body = json.loads(got[0]["body"])
    assert body["event"] == "task.completed" and body["delivery_id"] == d["id"]
    assert body["task"]["id"] == tid and body["task"]["state"] == "completed"
    assert body["task"]["year"] == 2023 and body["task"]["file_name"] == "grades.xlsx"
    assert body["links"]["status"] == f"https://predict.example.edu.cn/api/task/status/{tid}"
    assert body["message"].startswith("2023 级预测完成")
    # Backoff: each wait twice the one before; the receiver saw at least the second one.
    notifier = app.extensions["predict_notifier"]
    assert [notifier.retry_delay(n) for n in (1, 2, 3, 4)] == [0.05, 0.1, 0.2, 0.4]
    assert got[2]["at"] - got[1]["at"] >= 0.08, got
    # The answer the console shows; the secret is nowhere in the listing.
    listed = client.get("/api/webhooks").json["data"]["webhooks"]
    assert listed[0]["id"] == hook["webhook"]["id"] and listed[0]["secret_set"] is True
    assert SECRET not in json.dumps(listed)


def test_a_receiver_that_keeps_failing_is_given_up_after_the_last_attempt(
        app_config: dict[str, Any], make_app: Any, receiver: Receiver) -> None:
    app_config.update(PREDICT_WEBHOOK_BACKOFF_S=0.02, PREDICT_WEBHOOK_MAX_ATTEMPTS=2)
    client = make_app(runner=FakeRunner(hold=False)).test_client()
    add_hook(client, receiver.base + "/generic/fail2", secret=SECRET)
    run_task(client)
    [d] = deliveries(client, settled)
    assert (d["state"], d["attempts"], d["last_status"]) == ("failed", 2, 500), d
    assert "failing attempt 2" in d["last_answer"] and d["next_attempt_at"] is None


def test_redirects_are_not_followed_and_slow_receivers_time_out(
        app_config: dict[str, Any], make_app: Any, receiver: Receiver) -> None:
    app_config.update(PREDICT_WEBHOOK_MAX_ATTEMPTS=1, PREDICT_WEBHOOK_TIMEOUT_S=0.5)
    client = make_app(runner=FakeRunner(hold=False)).test_client()
    add_hook(client, receiver.base + "/redirect", kind="generic", name="redirect")
    add_hook(client, receiver.base + "/slow", kind="generic", name="slow")
    started = time.monotonic()
    run_task(client)
    got = {d["webhook_name"]: d for d in deliveries(client, lambda g: len(g) == 2 and settled(g))}
    assert time.monotonic() - started < 2.9  # the slow receiver answers after 3 s
    assert got["redirect"]["state"] == "failed" and got["redirect"]["last_status"] == 302
    assert "重定向" in got["redirect"]["last_error"]
    assert receiver.seen("/landing") == []
    assert got["slow"]["state"] == "failed" and got["slow"]["last_status"] is None
    assert "超时" in got["slow"]["last_error"]


def test_robots_get_their_own_payloads_signed_their_own_way(
        notify_app: tuple[FlaskClient, Any], receiver: Receiver) -> None:
    client, _ = notify_app
    add_hook(client, receiver.base + "/dingtalk?access_token=abc123", kind="dingtalk",
             secret=SECRET)
    add_hook(client, receiver.base + "/wecom?key=693a91f6-7xxx", kind="wecom")
    add_hook(client, receiver.base + "/feishu", kind="feishu", secret=SECRET)
    before = len(receiver.seen())
    run_task(client)
    got = deliveries(client, lambda g: len(g) == 3 and settled(g))
    assert {d["state"] for d in got} == {"delivered"}, got
    assert {d["attempts"] for d in got} == {1}
    sent = {r["path"]: r for r in receiver.seen()[before:]}
    ding = json.loads(sent["/dingtalk"]["body"])
    assert ding["msgtype"] == "markdown" and set(ding["markdown"]) == {"title", "text"}
    assert "2023 级预测完成" in ding["markdown"]["text"]
    assert "access_token=abc123" in sent["/dingtalk"]["query"]
    assert "&timestamp=" in "&" + sent["/dingtalk"]["query"] and "sign=" in sent["/dingtalk"]["query"]
    wecom = json.loads(sent["/wecom"]["body"])
    assert wecom["msgtype"] == "markdown" and "2023 级预测完成" in wecom["markdown"]["content"]
    feishu = json.loads(sent["/feishu"]["body"])
    assert feishu["msg_type"] == "text" and "2023 级预测完成" in feishu["content"]["text"]
    assert feishu["timestamp"] and feishu["sign"]
    # The robots' keys are masked in the listing.
    listed = json.dumps(client.get("/api/webhooks").json)
    assert "abc123" not in listed and "693a91f6" not in listed


def test_a_robot_refusing_the_signature_is_a_failed_attempt(
        app_config: dict[str, Any], make_app: Any, receiver: Receiver) -> None:
    app_config.update(PREDICT_WEBHOOK_MAX_ATTEMPTS=1)
    client = make_app(runner=FakeRunner(hold=False)).test_client()
    add_hook(client, receiver.base + "/dingtalk", kind="dingtalk", secret="not-the-secret")
    run_task(client)
    [d] = deliveries(client, settled)
    assert d["state"] == "failed" and d["last_status"] == 200
    assert "310000" in d["last_error"]


def test_a_batch_is_notified_once_and_its_tasks_not_one_by_one(
        notify_app: tuple[FlaskClient, Any], receiver: Receiver) -> None:
    client, app = notify_app
    add_hook(client, receiver.base + "/generic/ok", secret=SECRET)
    notifier = app.extensions["predict_notifier"]
    member = dataclasses.replace(_finished_task(), batch_id="b-1")
    notifier.task_finished(member)  # inside a batch: the batch tells
    batch = {"batch_id": "b-1", "state": "partial", "counts": {"completed": 1, "failed": 1},
             "tasks": [{"task_id": member.id, "file": "一班.xlsx", "status": "completed",
                        "error": None, "summary": member.summary},
                       {"task_id": "t-2", "file": "二班.xlsx", "status": "failed",
                        "error": "文件不是有效的 Excel 工作簿", "summary": None}],
             "year": 2024, "created_at": "2026-11-29T21:00:00+00:00",
             "finished_at": "2026-11-29T21:00:09+00:00"}
    notifier.batch_finished(batch)
    notifier.batch_finished(batch)  # reported again after a crash: still one delivery
    [d] = deliveries(client, settled)
    assert (d["event"], d["subject"], d["state"]) == ("batch.partial", "b-1", "delivered")
    [sent] = [r for r in receiver.seen("/generic/ok") if r["headers"]["X-Predict-Delivery"] == d["id"]]
    body = json.loads(sent["body"])
    assert body["batch"]["counts"] == {"completed": 1, "failed": 1}
    assert [t["file"] for t in body["batch"]["tasks"]] == ["一班.xlsx", "二班.xlsx"]
    assert body["batch"]["students"] == 1203
    assert body["message"] == "2024 级批量预测部分完成：2 个文件中 1 个成功、1 个未成功，共 1,203 名学生"


def test_a_real_batch_sends_one_notification_for_all_its_files(
        notify_app: tuple[FlaskClient, Any], receiver: Receiver) -> None:
    client, _ = notify_app
    add_hook(client, receiver.base + "/generic/ok", secret=SECRET)
    r = client.post("/api/batch/start", content_type="multipart/form-data", data={
        "year": "2023", "files": [(io.BytesIO(tiny_xlsx()), "一班.xlsx"),
                                  (io.BytesIO(b"not a workbook"), "二班.xlsx")]})
    assert r.status_code == 200, r.json
    [d] = deliveries(client, settled)
    assert (d["event"], d["subject"]) == ("batch.partial", r.json["data"]["batch_id"]), d
    # Per-task notifications would have been queued before the batch's (its last task's end).
    assert len(client.get("/api/webhook-deliveries").json["data"]["deliveries"]) == 1


def _finished_task() -> Task:
    summary = {"year": 2024, "students": 1203, "majors": [
        {"major": m, "code": m, "students": n, "destinations": {"1": 1, "2": 2, "3": n - 3}}
        for m, n in (("智能科学与技术", 300), ("计算机", 400), ("软件工程", 303), ("网络", 200))]}
    return Task(id="0" * 8 + "-0000-4000-8000-" + "0" * 12, seq=1, year=2024,
                file_name="2024级成绩.xlsx", upload_name="u.xlsx", file_sha256="x", cache_key="k",
                created_at=1000.0, status=COMPLETED, started_at=1000.0, finished_at=1009.2,
                summary=summary)


def test_the_chinese_message_and_the_receivers_signature_check() -> None:
    event = messages.task_event(_finished_task(), "d-1", None, 2000.0)
    assert event["message"] == "2024 级预测完成：4 个专业 1,203 名学生，用时 9 秒（2024级成绩.xlsx）"
    assert [m["students"] for m in event["task"]["majors"]] == [300, 400, 303, 200]
    assert event["links"] == {}  # no public address configured: no links
    req = messages.render("generic", "http://x/", "s3cret", "d-1", messages.event_body(event),
                          1, 2000.0)
    # The README's receiver example, verbatim in spirit.
    ts = req.headers["X-Predict-Timestamp"]
    expected = "sha256=" + hmac.new(b"s3cret", ts.encode() + b"." + req.body,
                                    hashlib.sha256).hexdigest()
    assert hmac.compare_digest(expected, req.headers["X-Predict-Signature"])
    assert req.headers["X-Predict-Delivery"] == "d-1"


def test_the_delivery_schedule_on_sqlite_and_postgresql(db_url: str) -> None:
    """The statements the sender relies on, on both databases (issue 12 moves records
    to PostgreSQL): one row per event, claiming an attempt once, marking it delivered."""
    store = NotifyStore(db_url)
    try:
        hook = store.add_webhook(name="教务处", kind="generic", url="http://x/", secret="s",
                                 events=["task.completed"])
        assert store.enqueue(hook, "d-1", "task.completed", "t-1", "m", "{}", 10.0)
        assert not store.enqueue(hook, "d-2", "task.completed", "t-1", "m", "{}", 11.0)
        [due] = store.due(now=10.0)
        assert store.begin_attempt(due, now=10.0, retry_at=70.0)
        assert not store.begin_attempt(due, now=10.0, retry_at=70.0)  # claimed already
        assert store.due(now=69.0) == [] and store.next_due_at() == 70.0
        store.finish_attempt("d-1", delivered=True, gave_up=False, status=200, answer="ok",
                             error=None, now=12.0)
        assert store.due(now=1e12) == [] and store.counts() == {"delivered": 1}
        assert store.delete_webhook(hook.id) and store.webhooks() == []
        # A row left pending with every attempt used (the limit lowered since) ends as failed.
        hook = store.add_webhook(name="n", kind="generic", url="http://127.0.0.1:9/",
                                 secret="s", events=["task.completed"])
        store.enqueue(hook, "d-3", "task.completed", "t-3", "m",
                      messages.event_body(messages.ping_event("d-3", None, 10.0)), 10.0)
        notifier = Notifier(store, public_url=None, timeout_s=1, max_attempts=2, backoff_s=1,
                            logger=logging.getLogger("test"))
        notifier._attempt(store.due(now=10.0)[0])  # attempt 1: nothing listens on port 9
        notifier.max_attempts, notifier.clock = 1, lambda: 1e12  # lowered; the retry is due
        assert store.due(now=1e12)[0].attempts == 1
        notifier.send_due()
        assert store.counts() == {"delivered": 1, "failed": 1}
        [d3] = store.deliveries(subject="t-3")
        assert d3.attempts == 1 and d3.last_error == "无法连接接收方"  # not sent a second time
    finally:
        store.close()


def test_old_finished_deliveries_are_forgotten_pending_ones_kept(tmp_path: Path) -> None:
    store = NotifyStore(default_url(tmp_path))
    hook = store.add_webhook(name="n", kind="generic", url="http://x/", secret="s",
                             events=["task.completed"])
    for subject, created in (("old-pending", 100.0), ("old-done", 100.0), ("new-done", 900.0)):
        store.enqueue(hook, subject, "task.completed", subject, "m", "{}", created)
        if subject.endswith("done"):
            store.finish_attempt(subject, delivered=True, gave_up=False, status=200, answer="",
                                 error=None, now=created)
    assert store.prune(before=500.0) == 1
    assert sorted(d.subject for d in store.deliveries()) == ["new-done", "old-pending"]
    assert oct((tmp_path / "notifications.sqlite3").stat().st_mode & 0o777) == "0o600"
    store.close()


def test_robot_messages_stay_under_the_robots_size_limits() -> None:
    tasks = [{"task_id": str(i), "file": "很长的文件名" * 60 + ".xlsx", "status": "failed",
              "error": "原因" * 300, "summary": None} for i in range(50)]
    event = messages.batch_event({"batch_id": "b", "state": "failed", "counts": {"failed": 50},
                                  "tasks": tasks, "year": 2024}, "d", None, 0.0)
    for kind, key, limit in (("wecom", "content", 4096), ("dingtalk", "text", 20000)):
        req = messages.render(kind, "http://x/", None, "d", messages.event_body(event), 1, 0.0)
        text = json.loads(req.body)["markdown"][key]
        assert len(text.encode()) <= limit and text.startswith("**2024 级批量预测失败"), kind
    feishu = messages.render("feishu", "http://x/", None, "d", messages.event_body(event), 1, 0.0)
    assert len(json.loads(feishu.body)["content"]["text"].encode()) <= 20000


def test_managing_webhooks_needs_the_token(app_config: dict[str, Any], make_app: Any) -> None:
    app_config["PREDICT_API_TOKEN"] = TOKEN
    client = make_app(runner=FakeRunner(hold=False)).test_client()
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    for method, path in (("GET", "/api/webhooks"), ("POST", "/api/webhooks"),
                         ("DELETE", "/api/webhooks/abc"), ("POST", "/api/webhooks/abc/test"),
                         ("GET", "/api/webhook-deliveries")):
        assert client.open(path, method=method).status_code == 401, path
        assert client.open(path, method=method, headers={"X-API-Key": "x"}).status_code == 401
    r = client.post("/api/webhooks", json={"url": "https://oapi.dingtalk.com/robot/send?access_token=t0ken",
                                           "kind": "dingtalk", "secret": "SECabc"}, headers=bearer)
    assert r.status_code == 201 and "secret" not in r.json["data"]
    hook = r.json["data"]["webhook"]
    assert hook["url"] == "https://oapi.dingtalk.com/robot/send?access_token=***"
    generic = client.post("/api/webhooks", json={"url": "https://x.example/hook"}, headers=bearer)
    assert len(generic.json["data"]["secret"]) >= 40  # generated, shown once
    listed = client.get("/api/webhooks", headers=bearer).json["data"]["webhooks"]
    assert generic.json["data"]["secret"] not in json.dumps(listed)
    for body, code in (({"url": "ftp://x"}, "BAD_WEBHOOK"), ({"url": "https://x", "kind": "qq"},
                       "BAD_WEBHOOK"), ({"url": "https://x", "events": ["task.started"]},
                       "BAD_WEBHOOK"), ({"url": "https://u:p@x"}, "BAD_WEBHOOK"),
                       ({"url": "https://x", "kind": "wecom", "secret": "s"}, "BAD_WEBHOOK")):
        r = client.post("/api/webhooks", json=body, headers=bearer)
        assert (r.status_code, r.json["code"]) == (400, code), body
    assert client.post("/api/webhooks", data="x", headers=bearer).json["code"] == "BAD_JSON"
    lone = client.post("/api/webhooks", data='{"url": "https://x/\\ud800"}', headers=bearer,
                       content_type="application/json")
    assert (lone.status_code, lone.json["code"]) == (400, "BAD_WEBHOOK")
    assert client.delete("/api/webhooks/nope", headers=bearer).status_code == 404
    for body in ({"url": "https://elsewhere/"}, {"secret": "new"}, {"enabled": "no"},
                 {"name": None}, {"events": []}):
        r = client.patch(f"/api/webhooks/{hook['id']}", json=body, headers=bearer)
        assert (r.status_code, r.json["code"]) == (400, "BAD_WEBHOOK"), body
    assert client.delete(f"/api/webhooks/{hook['id']}", headers=bearer).status_code == 200


def test_a_disabled_webhook_hears_nothing_and_events_filter(
        notify_app: tuple[FlaskClient, Any], receiver: Receiver) -> None:
    client, _ = notify_app
    off = add_hook(client, receiver.base + "/generic/ok", secret=SECRET, name="off")["webhook"]
    failures = add_hook(client, receiver.base + "/generic/ok", secret=SECRET, name="failures",
                        events=["task.failed"])["webhook"]
    r = client.patch(f"/api/webhooks/{off['id']}", json={"enabled": False, "name": "停用"})
    assert r.status_code == 200 and r.json["data"]["webhook"]["enabled"] is False
    assert r.json["data"]["webhook"]["name"] == "停用"
    run_task(client)
    time.sleep(0.3)  # the listener queues at the task's end, before its status says completed
    assert client.get("/api/webhook-deliveries").json["data"]["deliveries"] == []
    client.patch(f"/api/webhooks/{off['id']}", json={"enabled": True})
    run_task(client)
    [d] = deliveries(client, settled)
    assert d["webhook_id"] == off["id"] and d["state"] == "delivered"
    assert failures["events"] == ["task.failed"]


def test_without_a_token_only_the_server_itself_manages_webhooks(
        make_app: Any) -> None:
    client = make_app(runner=FakeRunner(hold=False)).test_client()
    remote = {"REMOTE_ADDR": "10.1.2.3"}
    r = client.get("/api/webhooks", environ_base=remote)
    assert (r.status_code, r.json["code"]) == (403, "FORBIDDEN")
    assert client.post("/api/webhooks", json={"url": "http://10.0.0.1/"},
                       environ_base=remote).status_code == 403
    assert client.get("/api/webhooks").status_code == 200  # loopback


def test_delivery_continues_after_a_restart_and_is_not_sent_again(
        tmp_path: Path, receiver: Receiver) -> None:
    """gunicorn: attempt 1 fails, the service stops before attempt 2 is due; after
    the restart attempts 2 (fails) and 3 (accepted) follow; after one more restart
    nothing is sent again."""
    workbook = grade_workbook(tmp_path / "grades.xlsx", 20, seed=3)
    server = LiveServer(tmp_path / "data", model_dir=MODELS_DIR, plans_dir=PLANS_DIR, token=TOKEN,
                        env={"PREDICT_WEBHOOK_BACKOFF_S": "3", "PREDICT_MAX_WORKERS": "1"})
    url = receiver.base + "/generic/fail2"
    db = tmp_path / "data" / "notifications.sqlite3"
    with server:
        r = requests.post(server.base + "/api/webhooks", headers=server.headers(), timeout=10,
                          json={"url": url, "secret": SECRET})
        assert r.status_code == 201, r.text
        with workbook.open("rb") as fh:
            r = requests.post(server.base + "/api/task/start", headers=server.headers(),
                              data={"year": "2023"}, files={"file": ("grades.xlsx", fh)}, timeout=60)
        assert r.status_code == 200, r.text
        tid = r.json()["data"]["task_id"]
        end = time.monotonic() + 60
        while not [x for x in receiver.seen("/generic/fail2") if tid in x["body"]]:
            assert time.monotonic() < end, server.output_tail()
            time.sleep(0.05)
    mine = lambda: [x for x in receiver.seen("/generic/fail2") if tid in x["body"]]  # noqa: E731
    assert [x["status"] for x in mine()] == [500]
    with sqlite3.connect(db) as conn:
        state, attempts = conn.execute("SELECT state, attempts FROM webhook_deliveries").fetchone()
    assert (state, attempts) == ("pending", 1)
    with server:  # started again: attempt 2 is due at once, attempt 3 six seconds later
        end = time.monotonic() + 40
        while len(mine()) < 3:
            assert time.monotonic() < end, (mine(), server.output_tail())
            time.sleep(0.1)
        got = server.get("/api/webhook-deliveries").json()["data"]["deliveries"]
        assert (got[0]["state"], got[0]["attempts"]) == ("delivered", 3)
    with server:
        time.sleep(1.5)  # a sender that re-sent delivered rows would have done so by now
        assert server.get("/api/webhook-deliveries").json()["data"]["deliveries"][0]["state"] == \
            "delivered"
    sent = mine()
    assert [x["status"] for x in sent] == [500, 500, 200]
    assert len({x["headers"]["X-Predict-Delivery"] for x in sent}) == 1
    assert all(x["signature_ok"] for x in sent)
    assert SECRET not in "".join(p.read_text() for p in tmp_path.glob("**/*.log"))


def test_the_console_lists_each_delivery_with_its_last_answer(
        tmp_path: Path, receiver: Receiver) -> None:
    """Chromium on the console of a real service: one test message delivered, one
    refused (a redirect), each shown with its state and last answer."""
    browser = pytest.importorskip("support.browser")
    if not browser.CHROMIUM.exists():
        pytest.skip("Debian's chromium is not installed")
    server = LiveServer(tmp_path / "data", model_dir=MODELS_DIR, plans_dir=PLANS_DIR,
                        env={"PREDICT_WEBHOOK_MAX_ATTEMPTS": "1"})
    with server:
        for path, name in (("/generic/ok", "教务系统"), ("/redirect", "旧地址")):
            hook = requests.post(server.base + "/api/webhooks", timeout=10, json={
                "url": receiver.base + path, "secret": SECRET, "name": name}).json()["data"]
            assert requests.post(f"{server.base}/api/webhooks/{hook['webhook']['id']}/test",
                                 timeout=10).status_code == 202
        with browser.page() as pg:
            pg.goto(server.base + "/")
            pg.wait_for_selector("#deliveries-body tr[data-state='delivered']")
            pg.wait_for_selector("#deliveries-body tr[data-state='failed']", timeout=15000)
            ok = pg.inner_text("#deliveries-body tr[data-state='delivered']")
            bad = pg.inner_text("#deliveries-body tr[data-state='failed']")
            (REPO / "test-artifacts").mkdir(exist_ok=True)
            pg.locator("#deliveries-card").screenshot(path=str(REPO / "test-artifacts" /
                                                          "notifications-deliveries.png"))
    assert "教务系统" in ok and "已送达" in ok and "HTTP 200" in ok and "1/1" in ok, ok
    assert "旧地址" in bad and "失败" in bad and "HTTP 302" in bad and "重定向" in bad, bad
