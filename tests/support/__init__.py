"""Helpers shared by the test modules (not tests, not fixtures).

Tests import them as ``from support.<module> import ...`` (``tests`` is on
pytest's ``pythonpath``); fixtures live in ``tests/conftest.py``.

- ``paths``: where the repository, its demo model and plans are;
- ``engine``: the reference data (``../shared/reference``) and tiny workbook writers;
- ``service``: the HTTP client helpers and the controllable ``FakeRunner``;
- ``live_server``: the service as a real process (gunicorn or the script);
- ``pg``: a throw-away PostgreSQL server;
- ``hostile``: hostile and broken workbooks made in a few KB.
"""
