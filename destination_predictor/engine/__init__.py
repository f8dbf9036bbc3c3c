"""The prediction algorithm, with no web, database or HTTP code in it.

One module per step, in the order a run takes them (``docs/algorithm.md``
tells the whole story and names the module of each section):

==============  ==============================================================
``options``     the per-run options (``--config``): inverse search on/off, bounds
``majors``      major names, file codes, processing order, ``resolve()``
``categories``  plan category text -> one of the nine features
``plans``       the education plans (培养方案): required rows with credits
``grades``      the registrar's export -> ``Cohort`` -> grade matrix
``features``    credit-weighted category means, imputation, AcademicStrength
``model``       CatBoost + scaler + post-processing, on whole batches
``inverse``     the minimum uniform score for destinations 1 and 2
``results``     one major's outcome and the JSON summary of a run
``reports``     the result workbooks, written atomically
``pipeline``    ``Engine``: the steps above in order, for every major of a cohort
``literal``     the same algorithm one student at a time: the executable spec
``errors``      refusals with a machine code and a Chinese message
==============  ==============================================================

Importing this package loads numpy, pandas, CatBoost and the Excel libraries,
never Flask, Werkzeug, SQLAlchemy or requests (``tests/test_boundaries.py``).
"""

from .errors import PredictionCancelled, PredictionError
from .options import PredictConfig
from .pipeline import Engine, RunResult

__all__ = ["Engine", "PredictConfig", "PredictionCancelled", "PredictionError", "RunResult"]
