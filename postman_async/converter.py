"""The one cattrs converter: camelCase JSON <-> snake_case attrs models.

Strict about types that matter (a ``"false"`` string never becomes ``True``), lenient about
shape (unknown fields are ignored), and every failure surfaces as
:class:`~postman_async.errors.MalformedResponseError` through :func:`decode`.
"""

from __future__ import annotations

import re
import types
import typing
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any, TypeVar

import attrs
import cattrs
from cattrs.gen import make_dict_structure_fn, make_dict_unstructure_fn, override

from .errors import MalformedResponseError
from .models import Batch, BatchStatus, Language, MessageAttempt, MessageStatus

T = TypeVar("T")

SINGAPORE = timezone(timedelta(hours=8), "SGT")
_CAMEL_BOUNDARY = re.compile(r"_([a-z0-9])")
_RENAMES: dict[tuple[type, str], str] = {(Batch, "batch_message"): "BatchMessage"}


class DecodeError(ValueError):
    """The data does not have the documented shape (wrapped in MalformedResponseError). Our
    hooks raise only this, so a KeyError, TypeError or AttributeError under a
    MalformedResponseError can only be a bug, and the fuzz tests look for one."""


def to_camel(name: str) -> str:
    return _CAMEL_BOUNDARY.sub(lambda m: m.group(1).upper(), name)


def parse_timestamp(value: object) -> datetime:
    """ISO 8601 to an aware datetime. ``Z`` is accepted; a timestamp without an offset is taken
    as Singapore time, the API's own zone."""
    if not isinstance(value, str):
        raise DecodeError(f"timestamp must be a string, got {type(value).__name__}")
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    parsed = datetime.fromisoformat(text)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=SINGAPORE)


def _strict_str(value: object, _: object) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    raise DecodeError(f"expected a string, got {type(value).__name__}")


def _strict_int(value: object, _: object) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    raise DecodeError(f"expected an integer, got {type(value).__name__}")


def _strict_bool(value: object, _: object) -> bool:
    if isinstance(value, bool):
        return value
    raise DecodeError(f"expected a boolean, got {type(value).__name__}")


def _structure_open_enum(value: object, cls: type[T]) -> T:
    if not isinstance(value, str):
        raise DecodeError(f"expected a string, got {type(value).__name__}")
    return cls(value)  # type: ignore[call-arg]


def _is_optional(type_: Any) -> bool:
    args = typing.get_args(type_)
    return (
        typing.get_origin(type_) in (typing.Union, types.UnionType)
        and len(args) == 2
        and type(None) in args
    )


def _is_homogeneous_tuple(type_: Any) -> bool:
    args = typing.get_args(type_)
    return typing.get_origin(type_) is tuple and len(args) == 2 and args[1] is Ellipsis


def _make_converter() -> cattrs.Converter:
    conv = cattrs.Converter()
    conv.register_structure_hook(str, _strict_str)
    conv.register_structure_hook(int, _strict_int)
    conv.register_structure_hook(bool, _strict_bool)
    conv.register_structure_hook(datetime, lambda v, _: parse_timestamp(v))
    for open_enum in (MessageStatus, BatchStatus, Language):
        # Registered per class so they win over the str hook (they subclass str).
        conv.register_structure_hook(open_enum, _structure_open_enum)
    conv.register_unstructure_hook(datetime, lambda d: d.isoformat(timespec="milliseconds"))

    def names(cls: type) -> dict[str, Any]:
        return {
            a.name: override(rename=_RENAMES.get((cls, a.name), to_camel(a.name)))
            for a in attrs.fields(cls)
        }

    def optional_hook(type_: Any) -> Any:
        # cattrs re-dispatches the inner type on every call of an ``X | None`` field;
        # resolving it once here halves the cost of decoding a message.
        inner = next(t for t in typing.get_args(type_) if t is not type(None))
        hook = conv.get_structure_hook(inner)

        def structure_optional(value: Any, _: Any) -> Any:
            return None if value is None else hook(value, inner)

        return structure_optional

    def tuple_hook(type_: Any) -> Any:
        inner = typing.get_args(type_)[0]
        hook = conv.get_structure_hook(inner)

        def structure_tuple(value: Any, _: Any) -> Any:
            if not isinstance(value, (list, tuple)):
                raise DecodeError(f"expected a list, got {type(value).__name__}")
            return tuple(hook(item, inner) for item in value)

        return structure_tuple

    conv.register_structure_hook_factory(_is_optional, optional_hook)
    conv.register_structure_hook_factory(_is_homogeneous_tuple, tuple_hook)

    def object_hook(cls: type) -> Any:
        structure: Callable[[Any, Any], Any] = make_dict_structure_fn(cls, conv, **names(cls))
        required = [
            names(cls)[a.name].rename or a.name
            for a in attrs.fields(cls)
            if a.default is attrs.NOTHING
        ]

        def structure_object(value: Any, _: Any) -> Any:
            if not isinstance(value, dict):
                raise DecodeError(f"expected an object, got {type(value).__name__}")
            if missing := [k for k in required if k not in value]:
                raise DecodeError(f"missing {', '.join(missing)}")
            return structure(value, cls)

        return structure_object

    conv.register_structure_hook_factory(attrs.has, object_hook)
    conv.register_unstructure_hook_factory(
        attrs.has, lambda cls: make_dict_unstructure_fn(cls, conv, **names(cls))
    )

    structure_attempt = object_hook(MessageAttempt)

    def attempt_hook(value: Any, cls: type) -> MessageAttempt:
        # attempts[] nests {"error": {"type", "code"}}; messageAttempts[] is flat.
        if isinstance(value, dict) and isinstance(value.get("error"), dict):
            error = value["error"]
            value = {**value, "errorType": error.get("type"), "errorCode": error.get("code")}
        attempt: MessageAttempt = structure_attempt(value, cls)
        return attempt

    conv.register_structure_hook(MessageAttempt, attempt_hook)

    def string_map(value: Any, _: Any) -> dict[str, str]:
        if not isinstance(value, dict):
            raise DecodeError(f"expected an object, got {type(value).__name__}")
        return {_strict_str(k, str): _strict_str(v, str) for k, v in value.items()}

    conv.register_structure_hook_func(lambda t: t == dict[str, str], string_map)
    return conv


converter = _make_converter()


def decode(cls: type[T], data: Any) -> T:
    """Structure decoded JSON into ``cls``; any mismatch is a MalformedResponseError."""
    if not isinstance(data, dict):
        raise MalformedResponseError(
            f"expected a JSON object for {cls.__name__}, got {type(data).__name__}"
        )
    try:
        return converter.structure(data, cls)
    except Exception as exc:  # cattrs raises class/iterable validation groups
        raise MalformedResponseError(f"cannot decode {cls.__name__}: {_summary(exc)}") from exc


def encode(value: Any) -> Any:
    """Unstructure a model back to camelCase JSON-ready data."""
    return converter.unstructure(value)


def _summary(exc: BaseException) -> str:
    if isinstance(exc, cattrs.BaseValidationError):
        return "; ".join(cattrs.transform_error(exc))[:500]
    return f"{type(exc).__name__}: {exc}"[:500]
