"""Where things are: the repository, its demo model and plans, and the model
and plans the service tests run against."""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
# The repository's demo model and plans, for the tests about them exactly.
DEMO_MODELS_DIR = REPO / "models"
DEMO_PLANS_DIR = REPO / "plans"
# Overridable to try the suite against another model or plan set.
MODELS_DIR = Path(os.environ.get("PREDICT_TEST_MODEL_DIR") or DEMO_MODELS_DIR)
PLANS_DIR = Path(os.environ.get("PREDICT_TEST_PLANS_DIR") or DEMO_PLANS_DIR)
