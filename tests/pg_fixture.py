"""Temporary: moved to ``support.pg``; kept until the importer tests import from there."""

from support.pg import *  # noqa: F403
from support.pg import PASSWORD, PgServer, start_postgres  # noqa: F401
