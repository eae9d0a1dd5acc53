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


def params_of(model: type[BaseModel], *, exclude: Collection[str] = ()) -> Callable[[F], F]:
    """Decorate a tool function whose `**kwargs` take the fields of `model` (but `exclude`).

    Its own parameters come first (all keyword-only: the SDK passes arguments by name), then
    the model's required fields, then the others, each in the model's order.
    """

    def give(fn: F) -> F:
        sig = inspect.signature(fn, eval_str=True)
        own = [p for p in sig.parameters.values() if p.kind is not p.VAR_KEYWORD]
        if len(own) == len(sig.parameters):
            raise TypeError(f"{fn.__name__} needs a **kwargs to take {model.__name__}'s fields")
        clash = {p.name for p in own} & set(model.model_fields)
        if clash:
            raise TypeError(f"{fn.__name__} declares {sorted(clash)} of {model.__name__} again")
        fields = [(n, f) for n, f in model.model_fields.items() if n not in exclude]
        fields.sort(key=lambda nf: not nf[1].is_required())
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
            for name, field in fields
        ]
        params = [p.replace(kind=_KEYWORD) for p in own] + taken
        fn.__signature__ = sig.replace(parameters=params)  # type: ignore[attr-defined]
        fn.__annotations__ = {p.name: p.annotation for p in params} | {
            "return": sig.return_annotation
        }
        return fn

    return give
