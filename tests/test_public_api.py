"""The public surface: tuple ``__all__`` matching what each public module defines."""

from __future__ import annotations

import importlib
import inspect

import pytest

import aimdb

PUBLIC = ["aimdb", "aimdb.testing", "aimdb.links", "aimdb.abc", "aimdb.persistence"]


@pytest.mark.parametrize("name", PUBLIC)
def test_all_is_a_sorted_tuple_of_defined_names(name: str) -> None:
    mod = importlib.import_module(name)
    assert isinstance(mod.__all__, tuple)
    for attr in mod.__all__:
        assert hasattr(mod, attr), attr
    public_defined = {
        k
        for k, v in vars(mod).items()
        if not k.startswith("_") and (inspect.isclass(v) or inspect.isfunction(v))
    }
    assert public_defined <= set(mod.__all__)


def test_public_classes_live_in_aimdb_and_have_docstrings() -> None:
    for name in aimdb.__all__:
        obj = getattr(aimdb, name)
        if inspect.isclass(obj):
            assert obj.__module__ == "aimdb", name
            assert obj.__doc__ and len(obj.__doc__.strip()) > 20, name


def test_error_hierarchy() -> None:
    errors = [getattr(aimdb, n) for n in aimdb.__all__ if inspect.isclass(getattr(aimdb, n))]
    errors = [e for e in errors if issubclass(e, BaseException)]
    assert all(issubclass(e, aimdb.AimDbError) for e in errors)
    assert issubclass(aimdb.RecordNotFound, LookupError)
    assert issubclass(aimdb.TypeMismatch, TypeError)
    assert issubclass(aimdb.ConnectorTimeout, TimeoutError)
    assert issubclass(aimdb.SetTimeout, TimeoutError) and issubclass(aimdb.SetTimeout, aimdb.SyncError)
    assert issubclass(aimdb.ConnectionFailed, aimdb.ConnectorError)
    for e in errors:
        assert "raised" in (e.__doc__ or "").lower() or e in (
            aimdb.AimDbError,
            aimdb.BufferError_,
            aimdb.SyncError,
            aimdb.ConnectorError,
        ), e
