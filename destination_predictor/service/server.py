"""Starting the service: ``python async_api_server.py`` (``main``) serves the
app with gunicorn from Python, with the same settings as ``gunicorn
async_api_server:app`` -- the project's ``gunicorn.conf.py`` -- so both ways
of starting behave alike."""

from __future__ import annotations

import argparse
import os
import runpy
import sys
from pathlib import Path
from typing import Any

from gunicorn.app.base import BaseApplication

from .exposure import ExposureRefused, check_exposure, is_loopback
from .settings import PROJECT_DIR, SettingsError, load_settings

CONFIG_FILE = PROJECT_DIR / "gunicorn.conf.py"


class GunicornServer(BaseApplication):
    """Gunicorn with the project config file, bind overridden by the CLI flags."""

    def __init__(self, bind: str, config_file: Path = CONFIG_FILE) -> None:
        self._bind = bind
        self._config_file = config_file
        super().__init__()

    def load_config(self) -> None:
        options: dict[str, Any] = {}
        if self._config_file.is_file():
            options = runpy.run_path(str(self._config_file))
        for key, value in options.items():
            if key in self.cfg.settings and value is not None:
                self.cfg.set(key, value)
        self.cfg.set("bind", [self._bind])

    def load(self) -> Any:
        # Built in the worker process (preload_app is off): the pool threads
        # and child processes must belong to the process that serves requests.
        from .app import create_app

        return create_app()


def serve(host: str, port: int) -> None:
    GunicornServer(f"{host}:{port}").run()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="学生去向预测异步服务")
    try:
        settings = load_settings()
    except SettingsError as exc:
        print(f"错误: 配置无效：{exc}", file=sys.stderr)
        return 2
    parser.add_argument("--port", type=int, default=settings.port)
    parser.add_argument("--host", default=settings.host,
                        help="监听地址（默认只监听本机 127.0.0.1；其他地址需要 PREDICT_API_TOKEN）")
    parser.add_argument("--debug", action="store_true",
                        help="Flask development server with debug output; loopback only")
    args = parser.parse_args(argv)
    # The port names the log file (async_api_{port}.log) and the host is checked
    # again by gunicorn's on_starting hook, so both go through the environment.
    os.environ["PREDICT_PORT"] = str(args.port)
    os.environ["PREDICT_HOST"] = args.host
    if args.debug and not is_loopback(args.host):
        print("错误: --debug 只允许监听本机地址（如 127.0.0.1）", file=sys.stderr)
        return 2
    try:
        check_exposure([args.host], settings)
    except ExposureRefused as exc:
        print(f"错误: {exc}", file=sys.stderr)
        return 2
    if args.debug:
        from .app import create_app

        create_app().run(host=args.host, port=args.port, debug=True, use_reloader=False,
                         threaded=True)
        return 0
    serve(args.host, args.port)
    return 0
