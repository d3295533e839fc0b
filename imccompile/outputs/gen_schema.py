"""Regenerate ``imccompile/schemas/report.schema.json`` from the typed report model.

    python -m imccompile.outputs.gen_schema            # rewrite the file
    python -m imccompile.outputs.gen_schema --check    # exit 1 if the shipped file is stale
"""

from __future__ import annotations

import json
from pathlib import Path

from imccompile.outputs.report_model import report_json_schema
from imccompile.spec.gen_schema import schema_cli

SCHEMA_PATH = Path(__file__).resolve().parent.parent / "schemas" / "report.schema.json"


def render_schema() -> str:
    """The JSON Schema of the report, as the text shipped in the package."""
    return json.dumps(report_json_schema(), indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    return schema_cli("imccompile.outputs.gen_schema", SCHEMA_PATH, render_schema,
                      (__doc__ or "").splitlines()[0], argv)


if __name__ == "__main__":
    raise SystemExit(main())
