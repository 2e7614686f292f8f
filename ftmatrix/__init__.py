"""ftmatrix: a declarative experiment-matrix runner for fine-tuning deep-learning models."""

__version__ = "0.1.0"

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ftmatrix.api import Runs, load

__all__ = ["Runs", "load"]


def __getattr__(name: str) -> Any:
    # `ftmatrix.load` on first use only, so that `import ftmatrix` stays light
    if name in ("load", "Runs"):
        from ftmatrix import api

        return getattr(api, name)
    raise AttributeError(f"module 'ftmatrix' has no attribute {name!r}")
