"""Bundled demo data: education plans, grade workbooks and a synthetic model.

The real plans, grades and model are private, so the project ships stand-ins
with the same shapes (and the same kinds of mess) that let it run, be tested
and be demonstrated anywhere. Each submodule is also a command-line tool:

- ``python -m destination_predictor.demo.curricula --out plans``
- ``python -m destination_predictor.demo.grades --year 2024 --students 200 --out g.xlsx``
- ``python -m destination_predictor.demo.model --out models``

Nothing is imported here, so importing the package does not pull in CatBoost.
"""
