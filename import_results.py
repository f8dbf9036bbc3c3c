#!/usr/bin/env python3
"""Import a completed task's result workbooks into a database (see
``destination_predictor/importer/cli.py`` and the README)."""

import sys

from destination_predictor.importer.cli import main

if __name__ == "__main__":
    sys.exit(main())
