"""The demo sweep (two trained trials) every ensemble, export and serve test builds on.

It is built once per pytest session, under the session's base temp folder, by whichever test
module needs it first; later modules reuse the same folder.
"""

from __future__ import annotations

from pathlib import Path

import pytest


def _root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.getbasetemp() / "skelray-demo"
    root.mkdir(exist_ok=True)
    return root


@pytest.fixture(scope="module")
def experiment(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from skelray.ensemble.demo import demo_experiment

    return demo_experiment(_root(tmp_path_factory))


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A bundle of both demo trials (unequal weights), exported once per session."""
    from skelray.ensemble.demo import demo_bundle

    return demo_bundle(_root(tmp_path_factory))
