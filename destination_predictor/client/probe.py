"""Is the service at a URL up and serving? The deploy's health check.

    python -m destination_predictor.client.probe --base-url URL [--token-file F] [--timeout S]

``deploy/host.sh`` runs this after every start (deploy, restart, rollback) and
for ``status``, from the release's own virtualenv. It goes through
``ApiClient`` -- the same envelope checks and Chinese errors as every other
client of the service -- instead of a private HTTP snippet in the shell script.

Every request must pass:

- ``GET /health`` answers ``status: ok`` (open route; 503 while the model is
  not loaded, so a release without a usable model never counts as healthy);
- ``GET /api/majors`` with the token from ``--token-file``: proves the service
  runs with the token the deploy wrote, and can read its plans;
- with ``--token-file``, ``GET /api/majors`` *without* a token answers 401:
  proves the service does require it. A service that started without its
  token (and serves every student's grades to anyone) is not healthy.

Exit 0 with one summary line on stdout. Otherwise one Chinese line on stderr:
exit 1 when the service is not healthy (down, refusing, wrong answer), exit 2
when the arguments cannot be used (unreadable token file, malformed URL).
The token is read from a file, never taken on the command line, where ``ps``
would show it to every user of the machine.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Sequence
from pathlib import Path

from .api import ApiClient, ApiError

NOT_HEALTHY = 1
BAD_ARGS = 2


def _one_line(text: object) -> str:
    """Errors from the transport can span lines; the caller shows exactly one."""
    return " ".join(str(text).split())


def _fail(code: int, message: str) -> int:
    print(_one_line(message), file=sys.stderr)
    return code


def _reason(exc: ApiError) -> str:
    """The client's message, with a refused or unresolvable connection cut down
    to its OS reason (``[Errno 111] Connection refused``): during a deploy the
    probe runs every second until the service listens, and this is the line
    the operator reads when it never does."""
    if exc.code == "CONNECTION_ERROR":
        errno = re.search(r"\[Errno -?\d+\] [^'\")\]]+", exc.message)
        if errno:
            return f"无法连接服务（{errno.group(0).strip()}）"
    return exc.message


def _years(majors: dict[str, list[dict[str, object]]]) -> list[int | str]:
    return [int(y) if y.isdigit() else y for y in majors]


def _requires_token(base_url: str, timeout: float) -> None:
    """``GET /api/majors`` without a token must be refused with 401."""
    with ApiClient(base_url, timeout=timeout) as anonymous:
        try:
            anonymous.majors()
        except ApiError as exc:
            if exc.status == 401:
                return
            raise ApiError(exc.status, exc.code,
                           f"GET /api/majors（不带令牌）应返回 401，实际：{_reason(exc)}") from exc
    raise ApiError(200, "NO_AUTH", "GET /api/majors 不带令牌也返回了数据：服务没有要求访问令牌")


def probe(client: ApiClient) -> str:
    """The summary line of a healthy service; raises ``ApiError`` otherwise.
    With a token, the API must also refuse a request without it."""
    try:
        health = client.health()
    except ApiError as exc:
        raise ApiError(exc.status, exc.code, f"GET /health 失败：{_reason(exc)}") from exc
    if health.get("status") != "ok":
        raise ApiError(200, "NOT_OK", f"GET /health 的状态为 {health.get('status')!r}，应为 'ok'")
    try:
        majors = client.majors()
    except ApiError as exc:
        raise ApiError(exc.status, exc.code, f"GET /api/majors 失败：{_reason(exc)}") from exc
    if client.token:
        _requires_token(client.base_url, client.timeout)
    return (f"status={health.get('status')} model={health.get('model_version')} "
            f"running={health.get('running')} pending={health.get('pending')} "
            f"years={_years(majors)}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m destination_predictor.client.probe",
        description="健康检查：/health 为 ok、带令牌的 /api/majors 可用（给了令牌时，不带令牌的 "
                    "/api/majors 须返回 401）时退出码为 0。")
    parser.add_argument("--base-url", required=True, help="服务地址，如 http://127.0.0.1:8080")
    parser.add_argument("--token-file", help="API 令牌文件（如 shared/api_token）")
    parser.add_argument("--timeout", type=float, default=5.0, help="每个请求的超时秒数（默认 5）")
    args = parser.parse_args(argv)

    token = None
    if args.token_file:
        try:
            token = Path(args.token_file).read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            return _fail(BAD_ARGS, f"无法读取令牌文件 {args.token_file}：{exc}")
    if args.timeout <= 0:
        return _fail(BAD_ARGS, f"--timeout 应为正数：{args.timeout:g}")
    try:
        client = ApiClient(args.base_url, token=token, timeout=args.timeout)
    except ValueError:
        return _fail(BAD_ARGS, f"--base-url 应形如 http://主机:端口：{args.base_url}")
    try:
        with client:
            line = probe(client)
    except ApiError as exc:
        return _fail(NOT_HEALTHY, str(exc))
    print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
