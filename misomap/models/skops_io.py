"""One way to load a skops file: every type beyond skops' default-trusted ones must be on the
caller's exact allow-list, checked before anything is built."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import skops.io as sio
from skops.io.exceptions import UntrustedTypesFoundException

from misomap.core.errors import MisomapError

_LOAD_LOCK = threading.Lock()
"""skops rebuilds numpy arrays through ast.literal_eval, which CPython 3.11 does not allow from two
threads at once ("AST constructor recursion depth mismatch", CPython gh-106905); dask thread workers
load models concurrently."""


def load_trusted(data: bytes, trusted: Sequence[str], source: str, error: type[MisomapError],
                 what: str = "model") -> Any:
    """The object in skops `data`; `error` (naming `source`) for a corrupt archive or for any type
    outside skops' defaults and `trusted`."""
    try:
        untrusted = sio.get_untrusted_types(data=data)
    except Exception as err:  # skops raises various errors on a corrupt archive
        raise error(f"{source} is not a readable skops {what} file: {err}") from None
    refused = sorted(set(untrusted) - set(trusted))
    if refused:
        raise error(f"refusing to load {source}: it carries untrusted types {refused}; only {list(trusted)} "
                    "beyond skops' defaults are allowed. Retrain with misomap rather than loading a foreign "
                    "file.")
    try:
        with _LOAD_LOCK:
            return sio.loads(data, trusted=list(trusted))
    except UntrustedTypesFoundException as err:
        raise error(f"refusing to load {source}: {err}") from None
