"""The variants ``keras-vc speed`` measures: every head's speed variants in the registry.

The variants themselves are declared with their heads in :mod:`keras_vc.benchmark.registry`
(one name per method); :func:`register` adds a variant at run time (a head of its own), and a
variant's ``build`` that needs a part of keras_vc that is not installed raises
:class:`NotAvailable` (see :func:`require`): the report then lists it with the reason.
"""

import importlib

from keras_vc.benchmark import registry
from keras_vc.benchmark.registry import BASELINE  # noqa: F401 (part of this module's API)
from keras_vc.benchmark.registry import Built  # noqa: F401
from keras_vc.benchmark.registry import SPEED_SCOPES as SCOPES  # noqa: F401
from keras_vc.benchmark.registry import Variant


class NotAvailable(Exception):
    """Raised by a variant factory when what it needs is not in this installation."""


def variants():
    """``{name: Variant}`` of every variant, the baseline first (see :mod:`registry`)."""
    return registry.speed_variants()


def register(variant):
    """Adds ``variant`` to the registry as a head of its own (speed only) and returns it."""
    if not isinstance(variant, Variant):
        raise ValueError(f"`variant` must be a speed.Variant, got {type(variant).__name__}.")
    registry.register(registry.Head(variant.name, variant.title, speed=(variant,)))
    return variant


def unregister(name):
    """Removes a variant registered with :func:`register` (the baseline cannot be removed)."""
    registry.unregister(name)


def require(module, attribute):
    """Returns ``module.attribute``, or raises :class:`NotAvailable` saying what is missing."""
    try:
        found = importlib.import_module(module)
    except ImportError as error:
        raise NotAvailable(f"cannot import {module} ({error})") from error
    if not hasattr(found, attribute):
        raise NotAvailable(f"{module}.{attribute} does not exist in this version of keras_vc")
    return getattr(found, attribute)

