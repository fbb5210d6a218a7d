"""``skelray data convert`` and ``skelray data info``: fail vs skip, nothing half-written."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import skelray.data.cli as data_cli
from skelray.cli import app
from skelray.data import open_store

RUNNER = CliRunner()
GOOD_NTU = ["S001C001P001R001A001", "S001C002P003R001A002", "S002C003P002R002A003"]


@pytest.fixture(autouse=True)
def wide_console(monkeypatch: pytest.MonkeyPatch) -> None:
    # Rich wraps at 80 columns off a terminal; long temp paths would then break mid-word.
    monkeypatch.setattr(data_cli.console, "width", 400)
    monkeypatch.setattr(data_cli.err_console, "width", 400)


def ntu_text(frames: int, *, joints: int = 25, value: str = "0.5", t_header: int | None = None) -> str:
    rng = np.random.default_rng(frames)
    lines = [str(frames if t_header is None else t_header)]
    for _ in range(frames):
        lines += ["1", "72057594037931101 0 1 1 1 1 0 -0.2 0.1 2", str(joints)]
        for j in range(joints):
            x, y, z = rng.normal(size=3)
            first = value if j == 3 else f"{x:.6f}"
            lines.append(f"{first} {y:.6f} {z:.6f} 256.4 192.8 902.5 512.3 0.2 0.0 0.9 -0.07 2")
    return "\r\n".join(lines) + "\r\n"


def ntu_folder(root: Path, bad: str | None = None) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for name in GOOD_NTU:
        (root / f"{name}.skeleton").write_text(ntu_text(3), newline="")
    if bad is not None:
        (root / "S003C001P004R001A004.skeleton").write_text(bad, newline="")
    return root


def ucla_folder(root: Path, bad: object) -> Path:
    root.mkdir()
    frame = [[0.1, 0.2, 3.0]] * 20
    for name in ["a01_s01_e00_v01", "a02_s01_e00_v03"]:
        (root / f"{name}.json").write_text(json.dumps({"file_name": name, "skeletons": [frame, frame]}))
    (root / "a03_s02_e01_v02.json").write_text(json.dumps({"file_name": "x", "skeletons": bad}))
    return root


def pyskl_file(root: Path) -> Path:
    root.mkdir()
    # Not all zeros: convert --on-error skip leaves empty clips out.
    anns = [{"frame_dir": f"c{i}", "label": i, "total_frames": 2,
             "keypoint": np.ones((1, 2, 17, 2), np.float32)} for i in range(3)]
    anns[2]["keypoint"] = anns[2]["keypoint"] + np.nan
    doc = {"split": {"train": ["c0", "c1", "c2"]}, "annotations": anns}
    (root / "ann.pkl").write_bytes(pickle.dumps(doc))
    return root / "ann.pkl"


def npz_file(root: Path) -> Path:
    root.mkdir()
    kp = np.ones((6, 25, 3), np.float32)  # not all zeros: skip would leave empty clips out
    kp[5, 0, 0] = np.inf
    np.savez(root / "d.npz", keypoints=kp, shapes=np.array([[1, 2], [1, 2], [1, 2]]),
             labels=np.array([0, 1, 2]), ids=np.array(["p", "q", "r"]), layout=np.array("ntu25"))
    return root / "d.npz"


# (format, builder of a source holding 2 good items and 1 bad one, text naming the bad one, problem)
BAD_SOURCES: dict[str, tuple[str, Callable[[Path], Path], str, str]] = {
    "ntu truncated": ("ntu", lambda p: ntu_folder(p, ntu_text(3)[:300]), "S003C001P004R001A004.skeleton:",
                      "file ends early"),
    "ntu non-numeric": ("ntu", lambda p: ntu_folder(p, ntu_text(3, value="1.2.3")), "A004.skeleton:8:",
                        "non-numeric joint value '1.2.3'"),
    "ntu joint count": ("ntu", lambda p: ntu_folder(p, ntu_text(2, joints=24)), "A004.skeleton:4:",
                        "body has 24 joints"),
    "ntu nan": ("ntu", lambda p: ntu_folder(p, ntu_text(2, value="NaN")), "A004.skeleton:8:",
                "NaN or infinite"),
    "ntu T = 0": ("ntu", lambda p: ntu_folder(p, "0\r\n"), "A004.skeleton:1:", "has no frames (T = 0)"),
    "ucla T = 0": ("ucla", lambda p: ucla_folder(p, []), "a03_s02_e01_v02.json", "has no frames (T = 0)"),
    "ucla joints": ("ucla", lambda p: ucla_folder(p, [[[0, 0, 0]] * 19]), "a03_s02_e01_v02.json",
                    "19 joints"),
    "ucla inf": ("ucla", lambda p: ucla_folder(p, [[[1e999, 0, 0]] * 20]), "a03_s02_e01_v02.json",
                 "NaN or inf"),
    "pyskl nan": ("pyskl", pyskl_file, "ann.pkl annotation 2 ('c2')", "NaN or infinite"),
    "npz inf": ("npz", npz_file, "d.npz sequence 2 ('r')", "NaN or infinite"),
}


def convert(*args: str) -> object:
    return RUNNER.invoke(app, ["data", "convert", *args])


def test_convert_ntu_folder_then_info(tmp_path: Path) -> None:
    src = ntu_folder(tmp_path / "ntu")
    result = convert(str(src), "--format", "ntu", "--out", str(tmp_path / "store"))
    assert result.exit_code == 0, result.output
    assert "wrote 3 sequences" in result.output and "xsub_train 2" in result.output
    store = open_store(tmp_path / "store")
    assert store.ids == GOOD_NTU and store.layout == "ntu25" and store.source.startswith("ntu:")
    info = RUNNER.invoke(app, ["data", "info", str(tmp_path / "store")])
    assert info.exit_code == 0, info.output
    for text in ("Sequences per class", "A003", "xview_val", "Frames per sequence", "median",
                 "3 sequences, 60 classes"):
        assert text in info.output


@pytest.mark.parametrize("case", list(BAD_SOURCES))
def test_convert_fail_names_file_and_problem_and_writes_nothing(tmp_path: Path, case: str) -> None:
    fmt, build, where, problem = BAD_SOURCES[case]
    src = build(tmp_path / "src")
    out = tmp_path / "store"
    result = convert(str(src), "--format", fmt, "--out", str(out))
    assert result.exit_code == 2, result.output
    assert where in result.stderr and problem in result.stderr and "nothing was written" in result.stderr
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src"]


@pytest.mark.parametrize("case", list(BAD_SOURCES))
def test_convert_skip_converts_the_rest_and_reports_skipped(tmp_path: Path, case: str) -> None:
    fmt, build, where, problem = BAD_SOURCES[case]
    src = build(tmp_path / "src")
    result = convert(str(src), "--format", fmt, "--out", str(tmp_path / "store"), "--on-error", "skip")
    assert result.exit_code == 0, result.output
    assert "Skipped" in result.output and where.split(":")[0] in result.output and problem in result.output
    store = open_store(tmp_path / "store")
    assert len(store) == (3 if fmt == "ntu" else 2)
    assert all(where.split(":")[0].split(" ")[0] not in i for i in store.ids)


def test_existing_store_survives_a_failed_conversion(tmp_path: Path) -> None:
    out = tmp_path / "store"
    assert convert(str(ntu_folder(tmp_path / "good")), "-f", "ntu", "-o", str(out)).exit_code == 0
    before = (out / "sequences.arrow").read_bytes()
    bad = ntu_folder(tmp_path / "bad", ntu_text(3, value="oops"))
    result = convert(str(bad), "-f", "ntu", "-o", str(out), "--overwrite")
    assert result.exit_code == 2 and "non-numeric joint value 'oops'" in result.stderr
    assert (out / "sequences.arrow").read_bytes() == before
    again = convert(str(bad), "-f", "ntu", "-o", str(out))  # without --overwrite: refused up front
    assert again.exit_code == 2 and "a store exists here already" in again.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad", "good", "store"]


def test_layout_is_checked_against_the_joint_count(tmp_path: Path) -> None:
    src = ntu_folder(tmp_path / "ntu")
    result = convert(str(src), "-f", "ntu", "-o", str(tmp_path / "s"), "--layout", "coco17")
    assert result.exit_code == 2 and "has 17 joints but NTU .skeleton data has 25" in result.stderr
    result = convert(str(pyskl_file(tmp_path / "p")), "-f", "pyskl", "-o", str(tmp_path / "s"), "-l", "ntu25",
                     "--on-error", "skip")
    assert result.exit_code == 2 and "no sequence could be read (4 problem(s) reported)" in result.stderr
    assert not (tmp_path / "s").exists()


def test_help_warns_that_pyskl_pickles_must_be_trusted() -> None:
    result = RUNNER.invoke(app, ["data", "convert", "--help"])
    words = " ".join(w for w in result.output.split() if w != "│")  # drop the help box's borders
    assert result.exit_code == 0 and "only convert PYSKL files you trust" in words


def test_console_script_exits_2_with_the_message(tmp_path: Path) -> None:
    src = ntu_folder(tmp_path / "src", "0\n")
    exe = Path(sys.executable).with_name("skelray")
    cmd = [str(exe), "data", "convert", str(src), "--format", "ntu", "--out", str(tmp_path / "o")]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "S003C001P004R001A004.skeleton:1: has no frames (T = 0)" in proc.stderr
    assert not (tmp_path / "o").exists()


# -- joint order, empty clips, npz folders (issue 19) ----------------------------------------------
def _write_clips(path: Path, seqs: list, *, layout: str = "kinect_v1_20", **kwargs: object) -> Path:
    from skelray.data import SkeletonDataset, write_npz

    return write_npz(SkeletonDataset(seqs, layout, kwargs.get("splits", {}), kwargs.get("class_names")), path)


def _synthetic(n_per_class: int = 4, **kwargs: object) -> list:
    from skelray.data import synthetic

    return synthetic(3, n_per_class, "kinect_v1_20", 24, seed=0, subjects=2, **kwargs).sequences


def _permuted(seqs: list, order: np.ndarray) -> list:
    from skelray.data import SkeletonSequence

    return [SkeletonSequence(s.id, s.label, s.keypoints[:, :, order], s.tags) for s in seqs]


def test_convert_warns_on_a_permuted_joint_order_and_reorder_fixes_it(tmp_path: Path) -> None:
    from skelray.data import get_layout

    seqs = _synthetic()
    order = np.random.default_rng(3).permutation(20)  # the file's joint i is the layout's joint order[i]
    src = _write_clips(tmp_path / "perm.npz", _permuted(seqs, order))
    plain = convert(str(src), "-f", "npz", "-o", str(tmp_path / "as_is"))
    assert plain.exit_code == 0, plain.output
    assert "warning: left and right bones differ in length" in plain.output and "--reorder" in plain.output
    info = RUNNER.invoke(app, ["data", "info", str(tmp_path / "as_is")])
    assert info.exit_code == 0 and "warning: left and right bones differ in length" in info.output

    names = ",".join(get_layout("kinect_v1_20").joints[i] for i in order)
    for spec in (names, " ".join(map(str, order))):  # by name, or by index
        out = tmp_path / f"fixed{len(spec)}"
        result = convert(str(src), "-f", "npz", "-o", str(out), "--reorder", spec)
        assert result.exit_code == 0, result.output
        assert "warning" not in result.output and "worst left/right asymmetry" in result.output
        store = open_store(out)
        for got, want in zip(store, seqs):
            np.testing.assert_array_equal(got.keypoints, want.keypoints)
        assert "joints reordered" in store.source


def test_unpermuted_data_converts_without_a_warning(tmp_path: Path) -> None:
    src = _write_clips(tmp_path / "ok.npz", _synthetic())
    result = convert(str(src), "-f", "npz", "-o", str(tmp_path / "s"))
    assert result.exit_code == 0 and "warning" not in result.output
    assert "joint order (layout kinect_v1_20): 12 clips" in result.output


@pytest.mark.parametrize(("spec", "says"), [
    ("0,1,2", "lists 3 joints, layout 'kinect_v1_20' has 20"),
    (",".join(["head"] * 2 + [str(i) for i in range(2, 20)]), "lists head more than once and hip_center, spine"),
    ("hed," + ",".join(str(i) for i in range(1, 20)),
     "'hed' is not a joint of layout 'kinect_v1_20' (fix: did you mean 'head'?"),
    (",".join(str(i) for i in range(1, 21)), "joint index 20 is outside 0..19"),
])
def test_a_bad_reorder_is_refused_before_reading(tmp_path: Path, spec: str, says: str) -> None:
    result = convert(str(tmp_path / "not-read-yet"), "-f", "ucla", "-o", str(tmp_path / "s"), "--reorder", spec)
    assert result.exit_code == 2 and "--reorder: " in result.stderr and says in result.stderr
    assert not (tmp_path / "s").exists()


def test_empty_clips_are_reported_kept_with_fail_and_left_out_with_skip(tmp_path: Path) -> None:
    seqs = _synthetic()
    seqs[0].keypoints[:] = 0
    seqs[1].keypoints[:, :-3] = 0  # mostly empty: reported, kept
    src = _write_clips(tmp_path / "e.npz", seqs, splits={"train": [s.id for s in seqs[:6]]})
    kept = convert(str(src), "-f", "npz", "-o", str(tmp_path / "kept"))
    assert kept.exit_code == 0, kept.output
    assert f"1 clip(s) are empty, every joint zero in every frame ({seqs[0].id}); kept" in kept.output
    assert "1 empty clip(s), 1 with at least 50% empty frames" in kept.output and seqs[1].id in kept.output
    assert len(open_store(tmp_path / "kept")) == 12
    dropped = convert(str(src), "-f", "npz", "-o", str(tmp_path / "dropped"), "--on-error", "skip")
    assert dropped.exit_code == 0, dropped.output
    assert "every frame is empty" in dropped.output and "1 skipped" in dropped.output
    store = open_store(tmp_path / "dropped")
    assert len(store) == 11 and seqs[0].id not in store.ids and seqs[0].id not in store.splits["train"]
    assert seqs[1].id in store.ids


def test_info_shows_tags_scores_and_empty_frames(tmp_path: Path) -> None:
    from skelray.data import SkeletonSequence

    seqs = _synthetic()
    seqs[2].keypoints[:, :5] = 0
    scored = [SkeletonSequence(s.id, s.label, s.keypoints, s.tags, np.ones(s.keypoints.shape[:3], np.float32))
              for s in seqs]
    for name, clips, says in (("plain", seqs, "keypoint_score: not stored"),
                              ("scored", scored, "keypoint_score: stored (training does not use it today)")):
        src = _write_clips(tmp_path / f"{name}.npz", clips)
        assert convert(str(src), "-f", "npz", "-o", str(tmp_path / name)).exit_code == 0
        info = RUNNER.invoke(app, ["data", "info", str(tmp_path / name)])
        assert info.exit_code == 0, info.output
        assert says in info.output
        assert "tags: fold (str, 2 values), pattern (str, 3 values), subject (int, 2 values)" in info.output
        assert "empty frames: 0 empty clip(s), 0 with at least 50% empty frames, 1 with any; 5 of" in info.output
        assert "joint order (layout kinect_v1_20): 12 clips" in info.output and "warning" not in info.output


def test_convert_reads_a_folder_of_npz_files(tmp_path: Path) -> None:
    seqs = _synthetic()
    names = ["a", "b", "c"]
    _write_clips(tmp_path / "src" / "part1.npz", seqs[:5], splits={"train": [s.id for s in seqs[:3]]},
                 class_names=names)
    _write_clips(tmp_path / "src" / "part2.npz", seqs[5:], splits={"train": [seqs[5].id], "test": [seqs[6].id]})
    result = convert(str(tmp_path / "src"), "--format", "npz", "--out", str(tmp_path / "s"))
    assert result.exit_code == 0, result.output
    assert "wrote 12 sequences" in result.output and "train 4, test 1" in result.output
    store = open_store(tmp_path / "s")
    assert store.ids == [s.id for s in seqs] and store.class_names == names
    _write_clips(tmp_path / "src" / "part3.npz", seqs[:1])
    clash = convert(str(tmp_path / "src"), "--format", "npz", "--out", str(tmp_path / "t"))
    assert clash.exit_code == 2 and f"part3.npz: id '{seqs[0].id}' is also in part1.npz" in clash.stderr
    empty = tmp_path / "none"
    empty.mkdir()
    result = convert(str(empty), "--format", "npz", "--out", str(tmp_path / "u"))
    assert result.exit_code == 2 and "holds no .npz files" in result.stderr
