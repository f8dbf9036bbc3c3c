"""A small HTTP client for the prediction service, shared by ``test-async-api.py``
and the importer.

Why a client of our own: both callers need the same things done the same way --
the ``{"success": ..., "data": ...}`` envelope checked on every answer, the
server's Chinese error and machine code surfaced unchanged, result files
written atomically under their own name only, and a progress loop that
polls like the operators' console (every 3 s). Every shape the callers rely on
is validated here, so a server that answers something else fails loudly with
``ApiError(code="BAD_RESPONSE")`` instead of a ``KeyError`` three calls later.

Errors that never reached the server have ``status=None``: ``CONNECTION_ERROR``
(refused, DNS, reset), ``TIMEOUT`` (a request), ``WAIT_TIMEOUT`` (``wait``).
"""

from __future__ import annotations

import json
import mimetypes
import os
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote

import requests

TASK_STATUSES = ("pending", "running", "completed", "failed")
FINISHED_STATUSES = ("completed", "failed")

_CHUNK = 1 << 16


class ApiError(Exception):
    """A refusal by the server, or an answer the client cannot use.

    ``status`` is the HTTP status (None when no answer arrived), ``code`` the
    server's UPPER_SNAKE code (or the client's own: CONNECTION_ERROR, TIMEOUT,
    BAD_RESPONSE, WAIT_TIMEOUT), ``message`` a Chinese sentence for people.
    """

    def __init__(self, status: int | None, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message

    def __str__(self) -> str:
        where = f"HTTP {self.status}" if self.status is not None else "无响应"
        return f"{self.message} [{self.code}, {where}]"


def _bad(status: int | None, what: str) -> ApiError:
    return ApiError(status, "BAD_RESPONSE", f"服务返回的数据格式不符合接口约定：{what}")


class ApiClient:
    """One service at ``base_url`` (e.g. ``http://127.0.0.1:8080``).

    ``token`` is sent as ``Authorization: Bearer <token>``; ``timeout`` (seconds)
    bounds each request, not a whole task (see ``wait``).
    """

    def __init__(self, base_url: str, token: str | None = None, timeout: float = 30) -> None:
        if not base_url or "://" not in base_url:
            raise ValueError(f"base_url must look like http://host:port, got {base_url!r}")
        self.base_url = base_url.rstrip("/")
        self.token = token or None
        self.timeout = timeout
        self.session = requests.Session()
        self.session.headers["User-Agent"] = "destination-predictor-client/1.0"
        if self.token:
            self.session.headers["Authorization"] = f"Bearer {self.token}"

    def close(self) -> None:
        self.session.close()

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- transport ---------------------------------------------------------------

    def _url(self, *parts: str) -> str:
        # Every variable part is percent-encoded whole, so a task id or file name
        # can never add path segments or a query to the request.
        return self.base_url + "/" + "/".join(quote(p, safe="") for p in parts)

    def _send(self, method: str, url: str, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", self.timeout)
        try:
            return self.session.request(method, url, **kwargs)
        except requests.Timeout as exc:
            raise ApiError(None, "TIMEOUT", f"请求超时（{self.timeout} 秒）：{url}") from exc
        except requests.ConnectionError as exc:
            raise ApiError(None, "CONNECTION_ERROR", f"无法连接服务 {self.base_url}：{exc}") from exc
        except requests.RequestException as exc:
            raise ApiError(None, "CONNECTION_ERROR", f"请求失败：{exc}") from exc

    @staticmethod
    def _json(resp: requests.Response) -> Any:
        try:
            return resp.json()
        except ValueError:
            ctype = resp.headers.get("Content-Type", "")
            raise _bad(resp.status_code, f"不是 JSON（Content-Type: {ctype or '无'}）") from None

    @classmethod
    def _error_from(cls, resp: requests.Response) -> ApiError:
        """The server's own error when it sent one, else a generic one."""
        try:
            body = resp.json()
        except ValueError:
            body = None
        if isinstance(body, dict) and body.get("success") is False:
            code = body.get("code")
            msg = body.get("error")
            return ApiError(
                resp.status_code,
                code if isinstance(code, str) and code else "UNKNOWN_ERROR",
                msg if isinstance(msg, str) and msg else f"服务返回错误 HTTP {resp.status_code}",
            )
        return ApiError(resp.status_code, "HTTP_ERROR",
                        f"服务返回错误 HTTP {resp.status_code}（响应不是约定的错误格式）")

    def _call(self, method: str, *parts: str, **kwargs: Any) -> Any:
        """Send, check the envelope, return ``data``."""
        resp = self._send(method, self._url(*parts), **kwargs)
        if resp.status_code >= 400:
            raise self._error_from(resp)
        body = self._json(resp)
        if not isinstance(body, dict) or not isinstance(body.get("success"), bool):
            raise _bad(resp.status_code, "缺少布尔字段 success")
        if body["success"] is not True:
            raise self._error_from(resp)
        if "data" not in body:
            raise _bad(resp.status_code, "缺少字段 data")
        return body["data"]

    # --- routes ------------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        """``GET /health`` (open without token). Accepts the plain object or the
        envelope, since health checkers elsewhere only look at the status code."""
        resp = self._send("GET", self._url("health"))
        if resp.status_code >= 400:
            raise self._error_from(resp)
        body = self._json(resp)
        if isinstance(body, dict) and isinstance(body.get("success"), bool):
            if not body["success"]:
                raise self._error_from(resp)
            body = body.get("data")
        if not isinstance(body, dict) or not isinstance(body.get("status"), str):
            raise _bad(resp.status_code, "/health 应返回含 status 字段的对象")
        return body

    def majors(self) -> dict[str, list[dict[str, Any]]]:
        """``GET /api/majors``: ``{"2024": [{"name": ..., "code": ...}, ...], ...}``,
        the majors per year found in the server's plans (year keys are strings)."""
        data = self._call("GET", "api", "majors")
        by_year = data.get("majors") if isinstance(data, dict) else None
        if not isinstance(by_year, dict) or not all(
                isinstance(entries, list) and all(
                    isinstance(e, dict) and isinstance(e.get("name"), str)
                    and isinstance(e.get("code"), str) for e in entries)
                for entries in by_year.values()):
            raise _bad(200, '/api/majors 应返回 {"majors": {"年级": [{"name", "code"}]}}')
        return {str(year): entries for year, entries in by_year.items()}

    def start(self, file_path: str | os.PathLike[str], year: int | str,
              major: str | None = None, config: Mapping[str, Any] | str | None = None,
              priority: str | None = None) -> str:
        """``POST /api/task/start``; returns the task id at once."""
        path = Path(file_path)
        form: dict[str, str] = {"year": str(year)}
        if major:
            form["major"] = major
        if config is not None:
            form["config"] = config if isinstance(config, str) else json.dumps(
                dict(config), ensure_ascii=False)
        if priority:
            form["priority"] = priority
        mime = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        with path.open("rb") as fh:
            data = self._call("POST", "api", "task", "start", data=form,
                              files={"file": (path.name, fh, mime)})
        task_id = data.get("task_id") if isinstance(data, dict) else None
        if not isinstance(task_id, str) or not task_id:
            raise _bad(200, "启动任务的响应缺少 data.task_id")
        return task_id

    def status(self, task_id: str) -> dict[str, Any]:
        """``GET /api/task/status/<id>``: the task's ``data`` object, validated."""
        data = self._call("GET", "api", "task", "status", task_id)
        return validate_task(data)

    def tasks(self, status: str | None = None, limit: int | None = None) -> list[dict[str, Any]]:
        """``GET /api/tasks``, newest first."""
        params: dict[str, str | int] = {}
        if status:
            params["status"] = status
        if limit is not None:
            params["limit"] = int(limit)
        data = self._call("GET", "api", "tasks", params=params)
        items = data.get("tasks") if isinstance(data, dict) else data
        if not isinstance(items, list) or not all(isinstance(t, dict) for t in items):
            raise _bad(200, "/api/tasks 应返回任务对象列表")
        return items

    def wait(self, task_id: str, interval: float = 3.0, timeout: float = 1800,
             on_progress: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
        """Poll until the task is completed or failed and return its last status.

        Does not raise for a failed task: the caller decides what a failure
        means (the status carries ``error`` and ``error_code``). Raises
        ``ApiError(code="WAIT_TIMEOUT")`` after ``timeout`` seconds.
        """
        deadline = time.monotonic() + timeout
        while True:
            data = self.status(task_id)
            if on_progress is not None:
                on_progress(data)
            if data["status"] in FINISHED_STATUSES:
                return data
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ApiError(None, "WAIT_TIMEOUT",
                               f"等待任务 {task_id} 超时（{timeout:g} 秒），最后状态 {data['status']}")
            time.sleep(min(interval, remaining))

    def download(self, task_id: str, filename: str, dest_dir: str | os.PathLike[str]) -> Path:
        """``GET /api/task/result/<id>/<filename>`` into ``dest_dir/filename``.

        The name comes from the server, so it must be a bare file name; the file
        is written to a temporary name and renamed, so a broken transfer never
        leaves a half workbook that looks complete.
        """
        if not filename or Path(filename).name != filename or filename in (".", ".."):
            raise _bad(None, f"结果文件名不安全：{filename!r}")
        dest = Path(dest_dir)
        dest.mkdir(parents=True, exist_ok=True)
        resp = self._send("GET", self._url("api", "task", "result", task_id, filename),
                          stream=True)
        with resp:
            if resp.status_code >= 400:
                raise self._error_from(resp)
            fd, tmp_name = tempfile.mkstemp(prefix=".part-", dir=dest)
            try:
                with os.fdopen(fd, "wb") as out:
                    for chunk in resp.iter_content(_CHUNK):
                        out.write(chunk)
                target = dest / filename
                os.replace(tmp_name, target)
            except BaseException:
                Path(tmp_name).unlink(missing_ok=True)
                raise
        return target

    def download_all(self, task_id: str, dest_dir: str | os.PathLike[str]) -> list[Path]:
        """Every file listed in the task's ``result_files``; the task must be completed."""
        data = self.status(task_id)
        if data["status"] != "completed":
            raise ApiError(None, "TASK_NOT_COMPLETED",
                           f"任务 {task_id} 尚未完成（状态 {data['status']}），没有可下载的结果")
        return [self.download(task_id, name, dest_dir) for name in data["result_files"]]

    def cancel(self, task_id: str) -> dict[str, Any]:
        """``POST /api/task/<id>/cancel``: stops a pending or running task."""
        data = self._call("POST", "api", "task", task_id, "cancel")
        return data if isinstance(data, dict) else {"result": data}

    def import_task(self, task_id: str) -> dict[str, Any]:
        """``POST /api/task/<id>/import``: the service imports the results into
        its database (needs ``PREDICT_DATABASE_URL`` on the server)."""
        data = self._call("POST", "api", "task", task_id, "import")
        if not isinstance(data, dict):
            raise _bad(200, "导入接口应返回对象")
        return data


def validate_task(data: Any) -> dict[str, Any]:
    """Check the status fields clients depend on (issue 3's contract)."""
    if not isinstance(data, dict):
        raise _bad(200, "任务状态 data 应为对象")
    problems: list[str] = []
    if not isinstance(data.get("id"), str) or not data.get("id"):
        problems.append("id 应为非空字符串")
    if data.get("status") not in TASK_STATUSES:
        problems.append(f"status 应为 {'/'.join(TASK_STATUSES)}，实际 {data.get('status')!r}")
    progress = data.get("progress")
    if isinstance(progress, bool) or not isinstance(progress, int) or not 0 <= progress <= 100:
        problems.append(f"progress 应为 0-100 的整数，实际 {progress!r}")
    if not isinstance(data.get("message"), str):
        problems.append("message 应为字符串")
    files = data.get("result_files")
    if not isinstance(files, list) or not all(isinstance(f, str) for f in files):
        problems.append("result_files 应为字符串列表")
    if "error" not in data or not (data["error"] is None or isinstance(data["error"], str)):
        problems.append("error 应为 null 或字符串")
    if problems:
        raise _bad(200, "；".join(problems))
    return data
