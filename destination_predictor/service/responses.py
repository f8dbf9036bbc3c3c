"""The JSON envelope of every answer, and errors turned into it.

Success: ``{"success": true, "data": ...}``. Failure (status from
``errors.HTTP_STATUS``):
``{"success": false, "error": "<中文>", "code": "UPPER_SNAKE"}``. Nothing
else reaches a client: HTTP errors raised by Flask/Werkzeug (404, 405, 413)
are translated, and an unexpected exception is logged with its stack trace
and answered with a generic 500.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask, Response, current_app, jsonify
from werkzeug.exceptions import HTTPException

from ..engine.errors import PredictionError
from .errors import http_status as status_for_code

_HTTP_MESSAGES: dict[int, tuple[str, str]] = {
    400: ("BAD_REQUEST", "请求格式不正确"),
    401: ("UNAUTHORIZED", "需要有效的访问令牌"),
    403: ("FORBIDDEN", "没有权限访问"),
    404: ("NOT_FOUND", "请求的接口或资源不存在"),
    405: ("METHOD_NOT_ALLOWED", "该接口不支持此请求方法"),
    408: ("REQUEST_TIMEOUT", "请求超时"),
    413: ("FILE_TOO_LARGE", "上传的文件过大"),
    415: ("UNSUPPORTED_MEDIA_TYPE", "不支持的请求内容类型"),
    429: ("TOO_MANY_REQUESTS", "请求过于频繁，请稍后再试"),
    500: ("INTERNAL_ERROR", "服务器内部错误，请稍后重试"),
    503: ("SERVICE_UNAVAILABLE", "服务暂时不可用，请稍后重试"),
}


def ok(data: Any, http_status: int = 200, **extra: Any) -> tuple[Response, int]:
    return jsonify({"success": True, "data": data, **extra}), http_status


def error_response(status: int, code: str, message: str,
                   headers: dict[str, str] | None = None) -> Response:
    resp = jsonify({"success": False, "error": message, "code": code})
    resp.status_code = status
    for k, v in (headers or {}).items():
        resp.headers[k] = v
    return resp


def init_app(app: Flask, logger: logging.Logger) -> None:
    @app.errorhandler(PredictionError)
    def _refusal(exc: PredictionError) -> Response:
        """Every refusal, the engine's and the service's: status from the one table."""
        return error_response(status_for_code(exc.code), exc.code, exc.message,
                              getattr(exc, "headers", None))

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> Response:
        status = exc.code or 500
        code, message = _HTTP_MESSAGES.get(status, ("HTTP_ERROR", "请求无法处理"))
        if status == 413:
            limit = current_app.config.get("PREDICT_MAX_UPLOAD_MB")
            if limit:
                message = f"上传的文件过大，最大允许 {limit:g} MB"
        headers = {}
        methods = getattr(exc, "valid_methods", None)
        if status == 405 and methods:
            headers["Allow"] = ", ".join(methods)
        return error_response(status, code, message, headers)

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Response:
        logger.exception("event=http.unhandled error=%s", type(exc).__name__)
        code, message = _HTTP_MESSAGES[500]
        return error_response(500, code, message)
