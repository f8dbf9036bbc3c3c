"""Temporary: moved to ``support.live_server``; kept until the deploy and
importer tests import from there."""

from support.live_server import *  # noqa: F403
from support.live_server import free_port, port_open, run_deploy_script  # noqa: F401
