"""Regenerate ``imccompile/schemas/target.schema.json`` from the pydantic model.

    python -m imccompile.spec.gen_schema            # rewrite the file
    python -m imccompile.spec.gen_schema --check    # exit 1 if the shipped file is stale

Editors can validate a spec against it: add it to your JSON schema settings for ``hwspecs/*.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Callable

from imccompile.spec.schema import Target

SCHEMA_PATH = Path(__file__).resolve().parent.parent / "schemas" / "target.schema.json"


def render_schema() -> str:
    """The JSON Schema of a target spec, as the text shipped in the package."""
    schema = {"$schema": "https://json-schema.org/draft/2020-12/schema",
              **Target.model_json_schema()}
    return json.dumps(schema, indent=2, ensure_ascii=False) + "\n"


def schema_cli(prog: str, path: Path, render: Callable[[], str], description: str,
               argv: list[str] | None = None) -> int:
    """Command line of a schema generator: write ``render()`` to ``path``, or with ``--check``
    exit 1 when the shipped file differs (the target and the report schema share it)."""
    parser = argparse.ArgumentParser(prog=f"python -m {prog}", description=description)
    parser.add_argument("--check", action="store_true",
                        help="do not write; exit 1 if the shipped schema differs")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        current = path.read_text(encoding="utf-8") if path.exists() else ""
        if current != text:
            print(f"{path} is stale: run python -m {prog}", file=sys.stderr)
            return 1
        return 0
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    print(f"wrote {path}")
    return 0


def main(argv: list[str] | None = None) -> int:
    return schema_cli("imccompile.spec.gen_schema", SCHEMA_PATH, render_schema,
                      (__doc__ or "").splitlines()[0], argv)


if __name__ == "__main__":
    raise SystemExit(main())
