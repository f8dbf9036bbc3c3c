"""The prediction service.

    gunicorn async_api_server:app                       # with ./gunicorn.conf.py
    python async_api_server.py --port 8080 [--host 0.0.0.0] [--debug]

``app`` is built on first access (gunicorn looks it up in its worker), so
importing this module does nothing; settings come from PREDICT_* variables.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any


def __getattr__(name: str) -> Any:
    if name == "app":
        from destination_predictor.service import create_app

        app = create_app()
        globals()["app"] = app
        return app
    raise AttributeError(name)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="学生去向预测异步服务")
    parser.add_argument("--port", type=int, default=int(os.environ.get("PREDICT_PORT", "8080")))
    parser.add_argument("--host", default=os.environ.get("PREDICT_HOST", "0.0.0.0"))
    parser.add_argument("--debug", action="store_true",
                        help="Flask development server with debug output (never in production)")
    args = parser.parse_args(argv)
    # The port names the log file (async_api_{port}.log), so settings must see it.
    os.environ["PREDICT_PORT"] = str(args.port)
    if args.debug:
        from destination_predictor.service import create_app

        create_app().run(host=args.host, port=args.port, debug=True, use_reloader=False,
                         threaded=True)
        return 0
    from destination_predictor.service.server import serve

    serve(args.host, args.port)
    return 0


if __name__ == "__main__":
    sys.exit(main())
