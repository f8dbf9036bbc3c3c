#!/usr/bin/env python3
"""Predict student destinations from a registrar grade workbook (see README)."""

import sys

from destination_predictor.cli import main

if __name__ == "__main__":
    sys.exit(main())
