"""The informational commands: ``imccompile targets``, ``imccompile passes``, ``imccompile docs``."""

from __future__ import annotations

import dataclasses
import json
from typing import Sequence

from imccompile.cli import _Parser


def _targets_parser() -> _Parser:
    p = _Parser(prog="imccompile targets",
                description="The bundled hardware targets: one line each, or one resolved spec "
                            "as JSON (with --set overrides applied and validated).",
                epilog="examples:\n"
                       "  imccompile targets\n"
                       "  imccompile targets show pcm\n"
                       "  imccompile targets show rram --set adc.bits=6 --set array.rows=128\n"
                       "  imccompile targets show my_chip.json\n\n"
                       "field reference: spec-format.md (imccompile docs prints where it is)")
    sub = p.add_subparsers(dest="action", metavar="{show}", parser_class=_Parser)
    show = sub.add_parser("show", help="print a target's resolved spec as JSON",
                          description="Print a target's spec, with the overrides applied, as "
                                      "JSON.",
                          epilog="example: imccompile targets show pcm --set adc.bits=6")
    show.add_argument("name", metavar="NAME", help="bundled target name or a spec JSON path")
    show.add_argument("--set", dest="overrides", action="append", default=[],
                      metavar="FIELD=VALUE", help="override a spec field (repeatable)")
    return p


def run_targets(argv: Sequence[str]) -> int:
    from imccompile.spec import bundled_targets, load_target, target_summary

    args = _targets_parser().parse_args(argv)
    if args.action == "show":
        print(json.dumps(load_target(args.name, args.overrides).to_dict(), indent=2))
        return 0
    for name in bundled_targets():
        print(target_summary(load_target(name)))
    return 0


def pass_lines() -> list[str]:
    """Every registered pass (built-in and plugins): its name, what it does, its options with
    their accepted values and defaults, and whether the search tunes it."""
    from imccompile.passes import registered_passes

    lines = []
    for name, cls in registered_passes().items():
        doc = (cls.__doc__ or "").strip().split("\n\n")[0]
        lines.append(f"{name}: {' '.join(doc.split())}")
        fields = {f.name: f for f in dataclasses.fields(cls)}
        for option, otype in cls.option_types().items():
            f = fields[option]
            if f.default is not dataclasses.MISSING:
                text = f"default {_value_text(f.default)}"
            elif f.default_factory is not dataclasses.MISSING:
                text = f"default {_value_text(f.default_factory())}"
            else:
                text = "required"
            lines.append(f"    {option}: {otype.describe()} ({text})")
    return lines


def _value_text(value: object) -> str:
    if value is None:
        return "none"
    if isinstance(value, bool):
        return str(value).lower()
    return str(value) if value != "" else '""'


def run_passes(argv: Sequence[str]) -> int:
    _Parser(prog="imccompile passes",
            description="List the compression passes (built-in and installed plugins) with "
                        "their options.",
            epilog="examples:\n"
                   "  imccompile passes\n"
                   "  imccompile model.onnx -t pcm --passes "
                   "'prune{ratio=0.5,granularity=column},quantize{weight_bits=4}'\n\n"
                   "pipeline grammar and every option: passes.md (imccompile docs prints where "
                   "it is)").parse_args(argv)
    print("\n".join(pass_lines()))
    return 0


def run_docs(argv: Sequence[str]) -> int:
    from importlib import resources

    p = _Parser(prog="imccompile docs",
                description="Print where the documentation installed with the package is, and "
                            "what each file covers.",
                epilog='example: less "$(imccompile docs --path)/passes.md"')
    p.add_argument("--path", action="store_true", help="print only the folder")
    args = p.parse_args(argv)
    root = resources.files("imccompile") / "docs"
    if args.path:
        print(root)
        return 0
    print(f"documentation installed in {root}:")
    for f in sorted((f for f in root.iterdir() if f.name.endswith(".md")), key=lambda f: f.name):
        title = f.read_text(encoding="utf-8").splitlines()[0].lstrip("# ").strip()
        print(f"  {f.name:<20} {title}")
    print("the README (quick start, CLI reference, sweep, compare, search) is README.md of the "
          "source distribution")
    return 0
