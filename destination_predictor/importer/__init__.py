"""Result workbooks (and optionally the grade workbook) into the database the
student-facing application reads, all or nothing.

The only package of the project that imports SQLAlchemy: everything else
(the service's import route, ``import_results.py``) goes through the names
exported here. One job per module:

- ``tables``: the import itself -- one transaction that replaces each table's
  rows, and the report of what happened (``import_results``);
- ``workbooks``: reading and checking the result and grade workbooks (extent
  checked before the reader runs; which major codes are accepted);
- ``cells``: converting a cell to the type of the column it goes into;
- ``database``: database URLs, connections, the lock that serialises imports,
  passwords kept out of messages;
- ``errors``: ``ImportRefused``, the only exception raised.
"""

from .database import open_database, resolve_database_url, safe_url
from .errors import ImportRefused
from .tables import GRADES_TABLE, ImportReport, TableImport, import_results
from .workbooks import (
    REGISTRAR_COLUMNS,
    classify_results,
    majors_of_summary,
    read_predictions,
    read_registrar_grades,
)

__all__ = [
    "GRADES_TABLE", "REGISTRAR_COLUMNS", "ImportRefused", "ImportReport", "TableImport", "classify_results", "import_results",
    "majors_of_summary", "open_database", "read_predictions", "read_registrar_grades",
    "resolve_database_url", "safe_url",
]
