"""Optional dependencies: each is imported where a feature first needs it, so that the core needs
numpy alone, and a missing one is a MissingExtraError that names the extra to install."""

from __future__ import annotations

import importlib
from types import ModuleType

from ._errors import MissingExtraError


def require(*modules: str, extra: str, feature: str) -> ModuleType:
    """Import ``modules`` (a package and the submodules it needs) and return the first."""
    try:
        loaded = [importlib.import_module(name) for name in modules]
    except ImportError as exc:
        msg = f"{feature} needs the {extra} extra: pip install 'shared_object[{extra}]' ({exc})"
        raise MissingExtraError(msg) from exc
    return loaded[0]


__all__ = ["require"]
