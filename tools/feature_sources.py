"""Feature sources registered by name, for features that are not a hook's own dimensions or an SAE's latents.

A layer above the tools (the planted features of `evals`) registers its source here, and `--hook NAME` then
reaches it through `tools.features.resolve_features`, so the cache pass never imports what lies above it.
Kept free of torch so that registering costs nothing at start-up.
"""

from collections.abc import Callable
from typing import Any

from tools.errors import InterpError

SourceFactory = Callable[[Any], Any]
"""Takes the loaded SubjectModel, returns a tools.features.FeatureSource (typed loosely: this module sits
below both, so that registering imports neither)."""
_SOURCES: dict[str, SourceFactory] = {}


def register_source(name: str, factory: SourceFactory) -> None:
    """Make `--hook NAME` mean the source `factory(subject)` builds."""
    if name in _SOURCES and _SOURCES[name] is not factory:
        raise InterpError(f"feature source '{name}' is already registered")
    _SOURCES[name] = factory


def registered_source(name: str) -> SourceFactory | None:
    return _SOURCES.get(name)


def registered_names() -> list[str]:
    return sorted(_SOURCES)
