"""Presentation: everything here reads compile results and writes or shows them.

* `report` — the JSON report (`build_report`, `to_json`, `dumps`), typed by `report_model`;
* `display` — the terminal tables;
* `html_report` — the self-contained HTML page;
* `output` — output folders written atomically, and the program image's folder.

The compiler never imports this package.
"""

from __future__ import annotations

from imccompile.outputs.output import output_files, write_folder, write_program
from imccompile.outputs.report import build_report, dumps, graph_report, to_json

__all__ = ["build_report", "dumps", "graph_report", "output_files", "to_json", "write_folder",
           "write_program"]
