"""Every public name has a docstring (the API reference is generated from them)."""

from __future__ import annotations

import inspect
from types import ModuleType
from typing import Any

import postman_async
import postman_async.jobs


def undocumented(module: ModuleType) -> list[str]:
    missing = []
    for name in module.__all__:
        obj = getattr(module, name)
        if not (inspect.isclass(obj) or inspect.isfunction(obj)):
            continue
        if not inspect.getdoc(obj):
            missing.append(name)
        if inspect.isclass(obj):
            missing += [f"{name}.{attr}" for attr in _undocumented_members(obj)]
    return missing


def _undocumented_members(cls: type) -> list[str]:
    found = []
    for attr, value in vars(cls).items():
        if attr.startswith("_"):
            continue
        function: Any = value
        if isinstance(value, property):
            function = value.fget
        elif isinstance(value, (classmethod, staticmethod)):
            function = value.__func__
        elif not inspect.isfunction(value):
            continue
        if not (function.__doc__ or "").strip():
            found.append(attr)
    return found


def test_every_public_name_has_a_docstring() -> None:
    assert undocumented(postman_async) == []
    assert undocumented(postman_async.jobs) == []
