"""`fleet lint`, `fleet schema`, `fleet docs`: the template author's commands. None of
them reads a store or a target; lint and docs read only the templates folder."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

EXIT_OK, EXIT_INVALID, EXIT_USAGE = 0, 1, 2


def _templates(args: argparse.Namespace) -> Path:
    from composer.pipeline import default_templates_dir

    return args.templates or default_templates_dir()


def _write(text: str, out: str) -> None:
    if out == "-":
        sys.stdout.write(text)
    else:
        Path(out).write_text(text, encoding="utf-8")


def run(args: argparse.Namespace) -> int:
    """Run one of the three commands; the exit code."""
    if args.command == "lint":
        return _lint(_templates(args))
    if args.command == "schema":
        from composer.model.template_schema import fleet_schema, schema_text, template_schema

        _write(schema_text(fleet_schema() if args.fleet else template_schema()), args.out)
        if args.out != "-":
            print(f"Wrote {args.out}")
        return EXIT_OK
    from composer.cli.template_docs import templates_reference
    from composer.model.templates import TemplateError

    directory = _templates(args)
    try:
        page = templates_reference(directory)
    except TemplateError as exc:
        print(f"error: {directory}: {exc} (fleet lint says more)", file=sys.stderr)
        return EXIT_INVALID
    _write(page, args.out)
    if args.out != "-":
        print(f"Wrote {args.out}")
    return EXIT_OK


def _lint(directory: Path) -> int:
    from composer.verify.lint import lint_templates

    if not directory.is_dir():
        print(f"error: {directory}: no such templates folder", file=sys.stderr)
        return EXIT_USAGE
    result = lint_templates(directory)
    for problem in result.problems:
        print(f"error: {problem}", file=sys.stderr)
    print(result.summary())
    return EXIT_INVALID if result.problems else EXIT_OK
