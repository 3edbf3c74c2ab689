"""Fixtures shared by the data tests."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from data_test_helpers import write_tree


@pytest.fixture
def jpeg_tree(tmp_path: Path) -> Callable[..., Path]:
    """Factory: ``jpeg_tree(classes=..., per_class=..., size=..., top=..., name=...)`` -> root dir."""

    def build(
        classes: dict[str, list[str]] | None = None,
        *,
        per_class: int = 3,
        size: int = 8,
        top: str | None = None,
        name: str = "tree",
    ) -> Path:
        classes = classes or {"train": ["cat", "ant", "bee"], "test": ["bee", "cat", "ant"]}
        return write_tree(tmp_path / name, classes, per_class=per_class, size=size, top=top)

    return build
