"""Tool parameters taken from a protocol model, so a tool re-declares none of them.

The MCP SDK builds a tool's input schema from its function's signature (`inspect.signature`,
which honours `__signature__`). `params_of(Model)` gives a tool function, in place of its
`**kwargs`, one keyword parameter per field of `Model`: name, type, default, constraints and
description as the model declares them. The function receives them in its `**kwargs`.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Collection
from typing import Annotated, Any, TypeVar

from pydantic import BaseModel, Field
from pydantic.fields import FieldInfo

F = TypeVar("F", bound=Callable[..., Any])

_KEYWORD = inspect.Parameter.KEYWORD_ONLY


def _annotation(model: type[BaseModel], name: str, field: FieldInfo) -> Any:
    if field.alias or field.validation_alias:
        raise TypeError(f"{model.__name__}.{name}: a tool parameter cannot carry an alias")
    return Annotated[(field.annotation, *field.metadata, Field(description=field.description))]


def params_of(*models: type[BaseModel], exclude: Collection[str] = ()) -> Callable[[F], F]:
    """Decorate a tool function whose `**kwargs` take the fields of `models` (but `exclude`).

    Its own parameters come first (all keyword-only: the SDK passes arguments by name), then
    the models' required fields, then the others, each in its model's order, models in the
    order given.
    """
    names = " and ".join(m.__name__ for m in models)

    def give(fn: F) -> F:
        sig = inspect.signature(fn, eval_str=True)
        own = [p for p in sig.parameters.values() if p.kind is not p.VAR_KEYWORD]
        if len(own) == len(sig.parameters):
            raise TypeError(f"{fn.__name__} needs a **kwargs to take {names}'s fields")
        fields: list[tuple[type[BaseModel], str, FieldInfo]] = []
        for model in models:
            for n, f in model.model_fields.items():
                if n not in exclude and all(n != seen for _, seen, _ in fields):
                    fields.append((model, n, f))
        clash = {p.name for p in own} & {n for _, n, _ in fields}
        if clash:
            raise TypeError(f"{fn.__name__} declares {sorted(clash)} of {names} again")
        fields.sort(key=lambda mnf: not mnf[2].is_required())
        taken = [
            inspect.Parameter(
                name,
                _KEYWORD,
                default=(
                    inspect.Parameter.empty
                    if field.is_required()
                    else field.get_default(call_default_factory=True)
                ),
                annotation=_annotation(model, name, field),
            )
            for model, name, field in fields
        ]
        params = [p.replace(kind=_KEYWORD) for p in own] + taken
        fn.__signature__ = sig.replace(parameters=params)  # type: ignore[attr-defined]
        fn.__annotations__ = {p.name: p.annotation for p in params} | {
            "return": sig.return_annotation
        }
        return fn

    return give
