"""The prediction service.

    gunicorn async_api_server:app                       # with ./gunicorn.conf.py
    python async_api_server.py --port 8080 [--host 0.0.0.0] [--debug]

``app`` is built on first access (gunicorn looks it up in its worker), so
importing this module does nothing; settings come from PREDICT_* variables.
The code lives in ``destination_predictor.service``.
"""

from __future__ import annotations

import sys
from typing import Any


def __getattr__(name: str) -> Any:
    if name == "app":
        from destination_predictor.service import create_app

        app = create_app()
        globals()["app"] = app
        return app
    raise AttributeError(name)


if __name__ == "__main__":
    from destination_predictor.service.server import main

    sys.exit(main())
