#!/usr/bin/env python3
"""End-to-end check of a running prediction service; see destination_predictor/client/apicheck.py.

    python test-async-api.py --base-url http://HOST:8080 [--token T] [--year 2024] [--file X]
"""

import sys

from destination_predictor.client.apicheck import main

if __name__ == "__main__":
    sys.exit(main())
