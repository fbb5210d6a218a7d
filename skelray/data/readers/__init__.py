"""Dataset readers. Each returns the same in-memory ``SkeletonDataset``.

Every reader takes ``layout=`` (checked against the data's joint count) and ``on_error=``
(None raises the first ``DataError``; a callable receives each bad file or sequence, which is
then skipped). ``READERS`` maps the ``--format`` names of ``skelray data convert`` to them.
"""

from __future__ import annotations

from collections.abc import Callable

from skelray.data._types import SkeletonDataset
from skelray.data.readers.npz import read_npz, write_npz
from skelray.data.readers.ntu import read_ntu, read_ntu_file
from skelray.data.readers.pyskl import read_pyskl, write_pyskl
from skelray.data.readers.ucla import read_ucla, read_ucla_file

READERS: dict[str, Callable[..., SkeletonDataset]] = {
    "ntu": read_ntu,
    "pyskl": read_pyskl,
    "ucla": read_ucla,
    "npz": read_npz,
}

__all__ = [
    "READERS",
    "read_npz",
    "read_ntu",
    "read_ntu_file",
    "read_pyskl",
    "read_ucla",
    "read_ucla_file",
    "write_npz",
    "write_pyskl",
]
