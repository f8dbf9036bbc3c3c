"""Student destination prediction: the engine (plans, grades, features, model,
inverse search, reports) and, in ``destination_predictor.service``, the async
HTTP service built on it. The engine never imports Flask."""

__version__ = "1.0.0"
