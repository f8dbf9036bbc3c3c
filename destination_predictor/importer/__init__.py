"""Result workbooks into the student-facing database (SQLAlchemy)."""

from ._old import (
    GRADES_TABLE,
    REGISTRAR_COLUMNS,
    ImportRefused,
    ImportReport,
    TableImport,
    classify_results,
    import_results,
    open_database,
    read_predictions,
    read_registrar_grades,
    resolve_database_url,
    safe_url,
)

__all__ = [
    "GRADES_TABLE", "REGISTRAR_COLUMNS", "ImportRefused", "ImportReport", "TableImport", "classify_results", "import_results",
    "open_database", "read_predictions", "read_registrar_grades", "resolve_database_url",
    "safe_url",
]
