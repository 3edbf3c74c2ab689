"""Interpret a list of file paths as an ImageFolder tree with a train and a test split.

Accepted layout (the one ``torchvision.datasets.ImageFolder`` reads, one tree per split)::

    [<single top folder>/]train/<class>/<image>
    [<single top folder>/]test/<class>/<image>     (or val/<class>/<image> when there is no test/)

``val/`` stands in for ``test/`` because ImageNet-style trees ship a validation split and no test
split; when both exist ``test/`` wins. Files are kept when their extension is one of torchvision's
image extensions (like ImageFolder); hidden entries (``.DS_Store``, ``._*``, ``__MACOSX/``) are
skipped. Images may sit deeper than ``<class>/``; the class is the first folder under the split.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from torchvision.datasets.folder import IMG_EXTENSIONS

from ..errors import DataSourceError

_EXPECTED = (
    "expected train/<class>/<image> and test/<class>/<image> (or val/<class>/<image>), "
    "optionally under one top-level folder"
)


@dataclass(frozen=True)
class FolderLayout:
    """The interpreted tree.

    Attributes:
        prefix: ``""`` or ``"<top folder>/"``, prepended to split folders.
        split_dirs: ``{"train": "train", "test": "test" or "val"}``.
        class_names: sorted class folder names; a class's label is its position here.
        files: per split (``train``, ``test``), ``(path as given, label)`` pairs sorted by class then
            path, so the order never depends on how the directory or archive was listed.
    """

    prefix: str
    split_dirs: dict[str, str]
    class_names: list[str]
    files: dict[str, list[tuple[str, int]]]


def _is_hidden(parts: list[str]) -> bool:
    return any(p.startswith(".") or p == "__MACOSX" for p in parts)


def _preview(names: Iterable[str], limit: int = 10) -> str:
    names = sorted(names)
    shown = ", ".join(names[:limit])
    return f"[{shown}{', ...' if len(names) > limit else ''}] ({len(names)} entries)"


def interpret_layout(paths: Iterable[str], where: str) -> FolderLayout:
    """Map relative POSIX file paths onto the train/test ImageFolder layout.

    Args:
        paths: file paths relative to the tree's root (``/``-separated; a leading ``./`` is ignored).
        where: the directory or archive the paths came from, for error messages.

    Returns:
        The interpreted ``FolderLayout``.

    Raises:
        DataSourceError: wrong layout (names the top-level entries found), no images, files lying
            directly in a split folder, or train and test class folders that disagree.
    """
    entries: list[tuple[str, list[str]]] = []
    for path in paths:
        parts = [p for p in path.split("/") if p not in ("", ".")]
        if parts and not _is_hidden(parts):
            entries.append((path, parts))
    if not entries:
        raise DataSourceError(f"{where} contains no files; {_EXPECTED}")

    tops = {parts[0] for _, parts in entries}
    single_top_dir = len(tops) == 1 and all(len(parts) > 1 for _, parts in entries)
    inner = {parts[1] for _, parts in entries if len(parts) > 1}
    if "train" in tops:
        depth = 0
    elif single_top_dir and "train" in inner:
        # One wrapping folder (e.g. an archive made from `cifar10-jpeg/`) is fine; look inside it.
        depth = 1
    else:
        found = f"{next(iter(tops))}/ containing {_preview(inner)}" if single_top_dir else _preview(tops)
        raise DataSourceError(f"{where} has the wrong layout: {_EXPECTED}; found top-level entries {found}")
    prefix = "" if depth == 0 else entries[0][1][0] + "/"
    level = {parts[depth] for _, parts in entries if len(parts) > depth + 1}
    test_dir = "test" if "test" in level else "val" if "val" in level else None
    if test_dir is None:
        raise DataSourceError(
            f"{where} has a {prefix}train/ folder but no {prefix}test/ or {prefix}val/ folder; "
            f"{_EXPECTED}; found {prefix or 'top-level'} entries {_preview(level)}"
        )
    split_dirs = {"train": "train", "test": test_dir}

    by_split: dict[str, list[tuple[str, str, str]]] = {"train": [], "test": []}
    for split, dirname in split_dirs.items():
        for path, parts in entries:
            if len(parts) <= depth or parts[depth] != dirname:
                continue
            rest = parts[depth + 1 :]
            if len(rest) == 1:
                raise DataSourceError(
                    f"{where}: file {path!r} lies directly in {prefix}{dirname}/; images must be in "
                    f"class folders ({prefix}{dirname}/<class>/<image>)"
                )
            if rest[-1].lower().endswith(IMG_EXTENSIONS):
                by_split[split].append((rest[0], "/".join(rest[1:]), path))
        if not by_split[split]:
            raise DataSourceError(
                f"{where}: no images (extensions {', '.join(IMG_EXTENSIONS)}) under {prefix}{dirname}/<class>/"
            )

    train_classes = sorted({c for c, _, _ in by_split["train"]})
    test_classes = sorted({c for c, _, _ in by_split["test"]})
    if train_classes != test_classes:
        only_train = sorted(set(train_classes) - set(test_classes))
        only_test = sorted(set(test_classes) - set(train_classes))
        raise DataSourceError(
            f"{where}: train and {test_dir} class folders disagree; only in train: {only_train}; "
            f"only in {test_dir}: {only_test}"
        )
    label_of = {c: i for i, c in enumerate(train_classes)}
    files = {
        split: [(path, label_of[c]) for c, _, path in sorted(items, key=lambda t: (t[0], t[1]))]
        for split, items in by_split.items()
    }
    return FolderLayout(prefix=prefix, split_dirs=split_dirs, class_names=train_classes, files=files)
