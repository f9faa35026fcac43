"""Model registry: a name pattern such as ``wrn-{depth}-{width}`` maps to one builder.

A name is parsed against every registered pattern; the numbers it carries become the builder's
keyword arguments, so ``build_model("wrn-28-10", dropout=0.3)`` calls ``wrn(depth=28, width=10,
num_classes=10, dropout=0.3)``. Builders take explicit keywords, so a misspelt option raises.

The registry is a leaf: it imports no model family. Each family module registers itself with
``@register`` when it is imported, and ``import dirackit`` imports them all (``dirackit.models``),
as torchvision's and timm's registries are filled by their model packages.
"""
from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable

from torch import nn

if TYPE_CHECKING:
    from .recipes import Recipe

from .hooks import set_build_spec

__all__ = ["register", "build_model", "list_models", "model_card", "paper_recipe", "ModelCard"]


@dataclass(frozen=True)
class ModelCard:
    """What the registry knows about a family: its paper, recipe and reference parameter counts."""

    pattern: str
    builder: Callable[..., nn.Module]
    paper: str
    recipe: str
    examples: tuple[str, ...]
    params: dict[str, int] = field(default_factory=dict)  # name -> trainable parameters (10 classes)
    regex: re.Pattern = field(init=False, repr=False)

    def __post_init__(self) -> None:
        parts = re.split(r"\{(\w+)\}", self.pattern)
        body = "".join(
            re.escape(p) if i % 2 == 0 else rf"(?P<{p}>\d+)" for i, p in enumerate(parts)
        )
        object.__setattr__(self, "regex", re.compile(body + r"\Z"))

    def parse(self, name: str) -> dict[str, int] | None:
        match = self.regex.match(name)
        return None if match is None else {k: int(v) for k, v in match.groupdict().items()}


_CARDS: dict[str, ModelCard] = {}


def register(pattern: str, *, paper: str, recipe: str, examples: tuple[str, ...],
             params: dict[str, int] | None = None) -> Callable:
    """Decorator adding a builder under a name pattern; duplicate patterns are a bug and raise."""

    def add(builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if pattern in _CARDS:
            raise ValueError(f"model pattern {pattern!r} is registered twice")
        _CARDS[pattern] = ModelCard(pattern, builder, paper, recipe, tuple(examples), dict(params or {}))
        return builder

    return add


def _find(name: str) -> tuple[ModelCard, dict[str, int]]:
    for card in _CARDS.values():
        args = card.parse(name)
        if args is not None:
            return card, args
    known = ", ".join(c.pattern for c in _CARDS.values())
    raise ValueError(f"unknown model {name!r}: known families are {known}")


def build_model(name: str, num_classes: int = 10, **options) -> nn.Module:
    """Build a registered model by name, e.g. ``build_model("wrn-28-10", dropout=0.3)``.

    The result remembers how it was built (``model.build_spec``) so a run folder can rebuild it.
    """
    card, args = _find(name)
    model = card.builder(**args, num_classes=num_classes, **options)
    set_build_spec(model, name, num_classes, options)
    return model


def model_card(name: str) -> ModelCard:
    """The card of the family ``name`` belongs to (paper, recipe name, reference counts)."""
    return _find(name)[0]


def paper_recipe(name: str, **changes) -> "Recipe":
    """The training recipe of the paper model ``name`` comes from, with ``changes`` applied: e.g.
    ``paper_recipe("diracnet-34-1", epochs=6)`` is DiracNet's recipe shortened to 6 epochs, its lr
    milestones scaled with it (``Recipe.replace``)."""
    from .recipes import get_recipe
    return get_recipe(model_card(name).recipe).replace(**changes)


def list_models(pattern: str = "*") -> list[str]:
    """Example names of every registered family (each one builds), those matching the shell-style
    ``pattern`` (``fnmatch``: ``*``, ``?``, ``[...]``), e.g. ``list_models("*-dbb")``."""
    return [n for card in _CARDS.values() for n in card.examples if fnmatch.fnmatchcase(n, pattern)]
