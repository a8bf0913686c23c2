"""One root for the service's own exceptions, and one docstring that maps them."""

from __future__ import annotations

import importlib
import pkgutil

import service
from service import errors
from service.errors import FanoutError


def _own_exceptions() -> dict[str, type[BaseException]]:
    """Every exception class defined in the package, by ``module.Name`` without ``service.``."""
    found: dict[str, type[BaseException]] = {}
    for module_info in pkgutil.walk_packages(service.__path__, "service."):
        if module_info.name.endswith("__main__"):  # runs the command when imported
            continue
        module = importlib.import_module(module_info.name)
        for value in vars(module).values():
            if (
                isinstance(value, type)
                and issubclass(value, BaseException)
                and value.__module__ == module.__name__
            ):
                found[f"{module.__name__.removeprefix('service.')}.{value.__name__}"] = value
    return found


def test_every_exception_of_the_service_derives_from_the_root() -> None:
    own = _own_exceptions()
    assert len(own) > 20
    assert [name for name, cls in own.items() if not issubclass(cls, FanoutError)] == []


def test_the_root_docstring_names_every_one() -> None:
    tree = errors.__doc__ or ""
    for name in _own_exceptions():
        assert name.rsplit(".", 1)[1] in tree, name
