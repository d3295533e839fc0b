"""Regenerate ``imccompile/schemas/report.schema.json`` from the typed report model.

    python -m imccompile.outputs.gen_schema            # rewrite the file
    python -m imccompile.outputs.gen_schema --check    # exit 1 if the shipped file is stale
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from imccompile.outputs.report_model import report_json_schema

SCHEMA_PATH = Path(__file__).resolve().parent.parent / "schemas" / "report.schema.json"


def render_schema() -> str:
    """The JSON Schema of the report, as the text shipped in the package."""
    return json.dumps(report_json_schema(), indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m imccompile.outputs.gen_schema",
                                     description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--check", action="store_true",
                        help="do not write; exit 1 if the shipped schema differs")
    args = parser.parse_args(argv)
    text = render_schema()
    if args.check:
        current = SCHEMA_PATH.read_text(encoding="utf-8") if SCHEMA_PATH.exists() else ""
        if current != text:
            print(f"{SCHEMA_PATH} is stale: run python -m imccompile.outputs.gen_schema",
                  file=sys.stderr)
            return 1
        return 0
    SCHEMA_PATH.write_text(text, encoding="utf-8")
    print(f"wrote {SCHEMA_PATH}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
