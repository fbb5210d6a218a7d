"""Load NW-UCLA's training split from the Arrow store vs from the JSON folder, side by side.

Each measurement runs in a fresh Python process (imports excluded from the timing), after
asking the kernel to drop the files' cached pages (``posix_fadvise(DONTNEED)``, best effort
without root), alternating JSON and store runs. "Load" means every keypoint value of the
split is in memory and summed, so the store cannot win by merely mapping the file; both
sides must produce the same checksum. Prints medians, their ratio, and sizes on disk.

    .venv/bin/python benchmarks/bench_store.py [--ucla PATH] [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SPLIT = "xview_train"


def _drop_cache(paths: list[Path]) -> None:
    for p in paths:
        fd = os.open(p, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def _child(kind: str, path: str) -> None:
    """Time one load in this (fresh) process and print it as JSON."""
    import numpy as np

    from skelray.data import open_store, read_ucla

    t0 = time.perf_counter()
    if kind == "json":
        seqs = read_ucla(path, split=SPLIT).sequences
    else:
        seqs = list(open_store(path, split=SPLIT))
    t_open = time.perf_counter() - t0
    checksum = float(sum(np.float64(s.keypoints.sum(dtype=np.float64)) for s in seqs))
    seconds = time.perf_counter() - t0
    print(json.dumps({"seconds": seconds, "open": t_open, "n": len(seqs), "checksum": checksum}))


def _run(kind: str, path: Path, files: list[Path]) -> dict:
    _drop_cache(files)
    out = subprocess.run([sys.executable, __file__, "--child", kind, str(path)], check=True,
                         capture_output=True, text=True, cwd=REPO)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _size(files: list[Path]) -> int:
    return sum(f.stat().st_size for f in files)


def main() -> None:
    default = os.environ.get("SKELRAY_UCLA", str(REPO.parent / "shared" / "data" / "nw_ucla"))
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ucla", default=default, help="NW-UCLA JSON folder (default: %(default)s)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--child", nargs=2, metavar=("KIND", "PATH"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        _child(*args.child)
        return
    ucla = Path(args.ucla)
    if not ucla.is_dir():
        sys.exit(f"NW-UCLA not found at {ucla}; pass --ucla PATH or set SKELRAY_UCLA")

    from skelray.data import read_ucla, write_store

    json_files = sorted(ucla.glob("*.json"))
    with tempfile.TemporaryDirectory(prefix="bench_store-") as tmp:
        t0 = time.perf_counter()
        store_dir = write_store(read_ucla(ucla), Path(tmp) / "ucla", source=f"ucla:{ucla}")
        t_convert = time.perf_counter() - t0
        store_files = sorted(p for p in store_dir.rglob("*") if p.is_file())
        runs: dict[str, list[dict]] = {"json": [], "store": []}
        for _ in range(args.repeats):
            runs["json"].append(_run("json", ucla, json_files))
            runs["store"].append(_run("store", store_dir, store_files))
        store_bytes = _size(store_files)

    sums = {r["checksum"] for rs in runs.values() for r in rs}
    if len(sums) != 1:
        sys.exit(f"the two loaders disagree on the data: checksums {sorted(sums)}")
    med = {k: statistics.median(r["seconds"] for r in rs) for k, rs in runs.items()}
    open_med = statistics.median(r["open"] for r in runs["store"])
    json_bytes = _size(json_files)
    n = runs["store"][0]["n"]
    print(f"NW-UCLA {SPLIT}: {n} sequences, median of {args.repeats} fresh processes each "
          f"(page cache dropped before each run; imports not timed)")
    print(f"  JSON folder : {med['json'] * 1e3:9.1f} ms")
    print(f"  Arrow store : {med['store'] * 1e3:9.1f} ms   (open + select + views: {open_med * 1e3:.1f} ms)")
    print(f"  ratio       : store loads {med['json'] / med['store']:.0f}x faster than JSON")
    print(f"size on disk  : JSON {json_bytes / 2**20:.1f} MiB in {len(json_files)} files, "
          f"store {store_bytes / 2**20:.1f} MiB in {len(store_files)} file(s) "
          f"= {store_bytes / json_bytes:.2f}x the JSON size")
    print(f"one-off conversion (read all JSON + write store): {t_convert:.2f} s")


if __name__ == "__main__":
    main()
