"""One registry maps the network names used in model cards to constructors.

Cards name a network and its keyword arguments; nothing in a bundle can name arbitrary code.
Built-in networks that need MONAI are registered lazily (:func:`register_lazily`): their module is
imported when a card first names them, so a run that needs none of them never imports MONAI.
"""

from __future__ import annotations

from typing import Callable

import importlib

import torch

from ..errors import BundleError

NetworkBuilder = Callable[..., torch.nn.Module]
_REGISTRY: dict[str, NetworkBuilder] = {}
_LAZY: dict[str, str] = {}  # name -> module that registers it when imported


def register_network(name: str) -> Callable[[NetworkBuilder], NetworkBuilder]:
    """Decorator registering ``builder`` under ``name`` (names are unique)."""

    def decorate(builder: NetworkBuilder) -> NetworkBuilder:
        if name in _REGISTRY and _REGISTRY[name] is not builder:
            raise ValueError(f"network name {name!r} is already registered")
        _REGISTRY[name] = builder
        return builder

    return decorate


def register_lazily(name: str, module: str) -> None:
    """Record that importing ``module`` registers ``name``."""
    _LAZY[name] = module


def network_names() -> list[str]:
    return sorted(set(_REGISTRY) | set(_LAZY))


def build_network(name: str, args: dict) -> torch.nn.Module:
    """Build the network ``name`` with the card's ``args``.

    Raises:
        BundleError: unknown name or arguments the constructor rejects.
    """
    if name not in _REGISTRY and name in _LAZY:
        importlib.import_module(_LAZY[name])
    if name not in _REGISTRY:
        raise BundleError(f"unknown network {name!r}", "known networks: " + ", ".join(network_names()))
    try:
        return _REGISTRY[name](**args)
    except (TypeError, ValueError, AssertionError) as exc:
        raise BundleError(f"network {name!r} rejects its arguments {args}: {exc}", "fix network.args in the card") from None
