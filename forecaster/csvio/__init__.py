"""CSV in and out: validate a history CSV (or a folder of them) into `RunHistory` objects, write forecasts.

Input columns: ``step`` and the metric (required), ``run``, ``group``, ``lr`` (optional), names
matched ignoring case, W&B's ``_step`` read as the step. Rows whose
metric cell is empty carry LR only; a run's horizon is its rows after its last observed metric value.
Every problem is either fatal (`InputError`: one line, exit code 2) or repaired and counted in a
warning line, never silently dropped. Plain csv module and numpy: pandas is not a dependency.

Modules: `read` (files and folders), `arrow` (its fast path), `columns` (cells parsed and validated
into `Rows`, whatever read the table), `runs` (rows assembled into histories), `report` (what was
repaired), `horizon`, `write` (forecast CSV), `summaries` and `strict_json` (the summary document).
Another table source (a DataFrame) goes through `require_columns`, `parse_rows` and `histories_from_rows`.
"""

from forecaster.csvio.columns import Rows, parse_rows, require_columns, resolve_columns
from forecaster.csvio.horizon import extend_horizon, logging_interval
from forecaster.csvio.read import read_histories
from forecaster.csvio.report import ReadReport
from forecaster.csvio.runs import histories_from_rows
from forecaster.csvio.strict_json import jsonable, write_json
from forecaster.csvio.summaries import assemble_summary, summary, summary_entries
from forecaster.csvio.write import OUTPUT_COLUMNS, write_forecasts

__all__ = [
    "OUTPUT_COLUMNS", "ReadReport", "Rows", "read_histories", "resolve_columns", "require_columns",
    "parse_rows", "histories_from_rows", "logging_interval", "extend_horizon", "write_forecasts",
    "jsonable", "write_json", "summary", "summary_entries", "assemble_summary",
]
