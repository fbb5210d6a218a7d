"""``skelray export (EXPERIMENT_DIR --trial ID | ENSEMBLE.json) -o BUNDLE_DIR``."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from skelray.console import make_console

console = make_console()


def export_command(
    source: Path = typer.Argument(...,
                                  help="An ENSEMBLE.json from `skelray ensemble build`, or a sweep folder "
                                       "(then --trial is required)."),
    output: Path = typer.Option(..., "-o", "--output", help="The bundle folder to write."),
    trial: str = typer.Option(None, "--trial",
                              help="The trial to export, by name or unique prefix (e.g. t00001): a sweep "
                                   "folder needs --trial; an ENSEMBLE.json takes none."),
    tolerance: float = typer.Option(1e-4, "--tolerance", help="Largest allowed |fused - trained| logit."),
    check_data: bool = typer.Option(True, "--check-data/--no-check-data",
                                    help="Also compare on the sweep's validation clips if readable."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing bundle folder."),
    dtypes: list[str] = typer.Option(["float32", "bfloat16"], "--dtypes",
                                     help="Serving dtypes to check each member at (float32, bfloat16); "
                                          "a member is served only at a dtype checked here."),
) -> None:
    """Fuse (and compact) each member, check it against its training form, write the bundle.

    SOURCE is an ENSEMBLE.json (every member is exported), or a sweep folder: a sweep folder
    needs --trial, the one trial to export."""
    from skelray.export.writer import export_bundle

    manifest = export_bundle(source, output, trial=trial, tolerance=tolerance, check_data=check_data,
                             overwrite=overwrite, dtypes=tuple(dtypes))
    table = Table(title=f"bundle {output} ({len(manifest.members)} member(s), "
                        f"{manifest.num_classes} classes)")
    for col in ("member", "model", "stream", "weight", "params", "MACs/clip", "max |fused - trained|",
                "other dtypes", "checked on"):
        table.add_column(col)
    for m in manifest.members:
        table.add_row(m.name, m.model.name, m.stream, f"{m.weight:.3f}", f"{m.params:,}", f"{m.macs:,}",
                      f"{m.check.max_abs_diff:.2e}",
                      ", ".join(f"{k} {v:.2e}" for k, v in m.check.dtypes.items()) or "-",
                      ", ".join(f"{k} x{n}" for k, n in m.check.inputs.items()))
    console.print(table)
    console.print(f"next: skelray serve {output}")
