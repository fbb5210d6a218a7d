"""Studies: the papers' claims tested on data, in one command, with a report a user can rerun.

A study YAML (``studies/*.yaml``, format in ``spec.py``) names claims; each claim names the
sweeps it needs (sweep YAML bodies, merged onto the study's ``base``) and the test that
decides it (``verdict.py``: a Student-t interval of per-seed differences from
``skelray.sweep.stats``, and a rule). ``runner.run_study`` runs the sweeps of one size
(``smoke`` | ``laptop`` | ``full``) with ``skelray.sweep.runner`` into one folder, resumable
(``resume_study``), then serves the chosen ensemble over HTTP for claim 6 (``served.py``);
``report.write_report`` reads what has finished and writes ``report.md``,
PNG plots and ``claims.json`` (schema: ``claims.CLAIMS_SCHEMA``).
"""

from __future__ import annotations

from skelray.study.spec import SIZES, StudySpec, load_study

__all__ = ["SIZES", "StudySpec", "load_study"]
