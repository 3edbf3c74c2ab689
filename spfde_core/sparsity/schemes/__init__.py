"""Sparsity schemes: which shapes of zeros a layer may have (see ``base.py`` for the conventions).

``get_scheme(name, **params)`` builds one from the ``SCHEMES`` registry:

- ``unstructured``: single weights (MEST ``irregular``);
- ``block``: ``block_size`` x 1 blocks along output filters (MEST ``free_block_prune_column_4``);
- ``channel``: whole output filters (listed but not implemented by MEST);
- ``nm``: N:M along input channels (default 2:4), fixed sparsity 1 - N/M;
- ``pattern``: 4-of-9 kernel patterns + filter balance for 3x3 convs (MEST ``pattern``).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable

from spfde_core.registry import Registry
from spfde_core.sparsity.schemes.base import Scheme
from spfde_core.sparsity.schemes.block import BlockScheme
from spfde_core.sparsity.schemes.channel import ChannelScheme
from spfde_core.sparsity.schemes.nm import NMScheme
from spfde_core.sparsity.schemes.pattern import PatternScheme
from spfde_core.sparsity.schemes.unstructured import UnstructuredScheme

SCHEMES: Registry[Callable[..., Scheme]] = Registry("sparsity scheme")

for _cls in (UnstructuredScheme, BlockScheme, ChannelScheme, NMScheme, PatternScheme):
    SCHEMES.register(_cls.name)(_cls)


def get_scheme(name: str, **params: object) -> Scheme:
    """Build the scheme registered as ``name`` with keyword ``params`` (e.g. ``block_size=4``).

    Raises:
        KeyError: unknown ``name``; the message lists the known schemes.
        TypeError: a parameter the scheme does not take; the message lists the ones it does.
        ValueError: a parameter value the scheme rejects (e.g. ``block_size=0``, ``n > m``).
    """
    factory = SCHEMES.get(name)
    accepted = list(inspect.signature(factory).parameters)
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        raise TypeError(
            f"sparsity scheme '{name}' got unknown parameter(s) {', '.join(unknown)}; "
            f"it accepts: {', '.join(accepted) or '(none)'}"
        )
    return factory(**params)


__all__ = [
    "SCHEMES",
    "BlockScheme",
    "ChannelScheme",
    "NMScheme",
    "PatternScheme",
    "Scheme",
    "UnstructuredScheme",
    "get_scheme",
]
