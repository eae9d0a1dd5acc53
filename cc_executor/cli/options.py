"""Command-line options generated from protocol models, so no option is declared twice.

`add_options(parser, Model)` adds one `--kebab-name` per field of the model: its type,
choices and constraints come from the field's annotation (checked by pydantic as the option
is parsed, so `--max-turns 0` is refused naming `--max-turns`), its help from the field's
description. `options_from(args, Model)` collects the options given as request params.
`cc-executor claude` and `cc-executor sessions create` take their Claude options from
`ClaudeOptions` this way.
"""

from __future__ import annotations

import argparse
import types
from collections.abc import Callable, Collection
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel, TypeAdapter, ValidationError
from pydantic.fields import FieldInfo

FLAGS = {"add_dirs": "--add-dir", "watch_mode": "--watch"}
"""Options spelled otherwise than their field."""

REPEATED = frozenset({"add_dirs"})
"""List fields given by repeating the option (a path may hold a comma); other lists are
comma-separated."""


def _fields(
    model: type[BaseModel], only: Collection[str] | None, exclude: Collection[str]
) -> list[tuple[str, FieldInfo]]:
    fields = model.model_fields
    if only is not None:
        unknown = set(only) - set(fields)
        if unknown:
            raise TypeError(f"{model.__name__} has no fields {sorted(unknown)}")
    return [(n, f) for n, f in fields.items() if (only is None or n in only) and n not in exclude]


def _members(annotation: Any) -> list[Any]:
    """The members of a union but None (`annotation` itself if it is no union)."""
    if get_origin(annotation) in (Union, types.UnionType):
        return [a for a in get_args(annotation) if a is not type(None)]
    return [annotation]


def _kind(member: Any) -> Any:
    """`int` for `int` and `Annotated[int, ...]`, `list` for `list[str]`, `Literal`..."""
    if get_origin(member) is Annotated:
        member = get_args(member)[0]
    return get_origin(member) or member


def _checked(annotation: Any, field: FieldInfo) -> Callable[[str], Any]:
    """An argparse type: the value as the field's type, with the field's constraints."""
    if field.metadata:
        annotation = Annotated[(annotation, *field.metadata)]
    adapter: TypeAdapter[Any] = TypeAdapter(annotation)

    def convert(value: str) -> Any:
        try:
            return adapter.validate_python(value)
        except ValidationError as exc:
            reason = exc.errors()[0]["msg"]
            raise argparse.ArgumentTypeError(f"{reason} (got {value!r})") from None

    return convert


def _comma_list(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def flag_of(name: str) -> str:
    return FLAGS.get(name, "--" + name.replace("_", "-"))


def add_options(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup,
    model: type[BaseModel],
    *,
    only: Collection[str] | None = None,
    exclude: Collection[str] = (),
) -> None:
    """Add an option for every field of `model` (or those in `only`) but `exclude`."""
    for name, field in _fields(model, only, exclude):
        flag = flag_of(name)
        kw: dict[str, Any] = {"dest": name, "metavar": flag[2:].upper().replace("-", "_")}
        text = field.description
        if not text:
            raise TypeError(f"{model.__name__}.{name} has no description to be its --help")
        members = _members(field.annotation)
        kinds = {_kind(m) for m in members}
        if kinds == {bool} and field.default is None:  # unset means the service's default
            parser.add_argument(flag, dest=name, action=argparse.BooleanOptionalAction, help=text)
        elif kinds == {bool}:
            parser.add_argument(flag, dest=name, action="store_true", help=text)
        elif kinds == {Literal}:
            choices = [c for m in members for c in get_args(m)]
            parser.add_argument(flag, dest=name, choices=choices, help=text)
        elif kinds == {list}:
            if name in REPEATED:
                parser.add_argument(flag, action="append", help=f"{text} Repeatable.", **kw)
            else:
                parser.add_argument(
                    flag,
                    dest=name,
                    type=_comma_list,
                    metavar="A,B",
                    help=f"{text} Comma-separated.",
                )
        elif str in kinds:  # a string, or a string or something only JSON can spell
            parser.add_argument(flag, type=_checked(str, field), help=text, **kw)
        elif len(kinds) == 1 and kinds <= {int, float}:
            parser.add_argument(flag, type=_checked(members[0], field), help=text, **kw)
        else:
            raise TypeError(f"no command-line form for {model.__name__}.{name}")


def options_from(
    args: argparse.Namespace,
    model: type[BaseModel],
    *,
    only: Collection[str] | None = None,
    exclude: Collection[str] = (),
) -> dict[str, Any]:
    """The params the options `add_options` added collected: those given (flags if set)."""
    params: dict[str, Any] = {}
    for name, field in _fields(model, only, exclude):
        value = getattr(args, name, None)
        if value is not None and (value is not False or field.default is None):
            params[name] = value
    return params
