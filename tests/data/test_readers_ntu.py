"""NTU .skeleton reader, on files written here in the exact NTU text format."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from skelray.data.readers import read_ntu, read_ntu_file
from skelray.errors import DataError

RNG = np.random.default_rng(0)


def ntu_lines(frames: list[list[tuple[str, np.ndarray]]]) -> list[str]:
    """NTU text lines for frames of (bodyID, (25, 3) xyz) bodies; the other fields are fillers."""
    lines = [str(len(frames))]
    for bodies in frames:
        lines.append(str(len(bodies)))
        for body_id, xyz in bodies:
            lines.append(f"{body_id} 0 1 1 1 1 0 -0.2150019 0.1734234 2")
            lines.append("25")
            for x, y, z in xyz:
                rest = "256.4302 192.8171 902.5472 512.3344 0.2391 0.0127 0.9682 -0.0736 2"
                lines.append(f"{float(x)!r} {float(y)!r} {float(z)!r} {rest}")
    return lines


def write(path: Path, lines: list[str], newline: str = "\n") -> Path:
    path.write_bytes((newline.join(lines) + newline).encode("ascii"))
    return path


def body(t: int, scale: float) -> list[np.ndarray]:
    """``t`` frames of a body moving with amplitude ``scale`` (float32-exact values)."""
    return [(RNG.normal(size=(25, 3)) * scale + 1.0).astype(np.float32).astype(np.float64) for _ in range(t)]


def test_single_body_file_is_parsed_with_ids_and_label(tmp_path: Path) -> None:
    xyz = body(4, 0.1)
    f = write(tmp_path / "S001C002P003R002A005.skeleton",
              ntu_lines([[("72057594037931101", x)] for x in xyz]))
    seq = read_ntu_file(f)
    assert seq.id == "S001C002P003R002A005"
    assert seq.label == 4
    assert seq.tags == {"setup": 1, "camera": 2, "subject": 3, "replication": 2}
    assert seq.keypoints.shape == (1, 4, 25, 3) and seq.keypoints.dtype == np.float32
    np.testing.assert_array_equal(seq.keypoints[0], np.stack(xyz).astype(np.float32))


def test_crlf_file_reads_the_same_as_lf(tmp_path: Path) -> None:
    lines = ntu_lines([[("1", x)] for x in body(3, 0.1)])
    (tmp_path / "lf").mkdir()
    (tmp_path / "crlf").mkdir()
    lf = read_ntu_file(write(tmp_path / "lf" / "S001C001P001R001A001.skeleton", lines))
    crlf = read_ntu_file(write(tmp_path / "crlf" / "S001C001P001R001A001.skeleton", lines, "\r\n"))
    np.testing.assert_array_equal(lf.keypoints, crlf.keypoints)


def test_two_bodies_are_ordered_most_active_first(tmp_path: Path) -> None:
    calm, busy = body(5, 0.01), body(5, 1.0)
    f = write(tmp_path / "S001C001P001R001A050.skeleton",
              ntu_lines([[("calm", c), ("busy", b)] for c, b in zip(calm, busy, strict=True)]))
    kp = read_ntu_file(f).keypoints
    assert kp.shape == (2, 5, 25, 3)
    np.testing.assert_array_equal(kp[0], np.stack(busy).astype(np.float32))
    np.testing.assert_array_equal(kp[1], np.stack(calm).astype(np.float32))


def test_three_bodies_keep_the_two_most_active(tmp_path: Path) -> None:
    a, b, still = body(6, 0.5), body(6, 1.0), body(6, 0.001)
    f = write(tmp_path / "S001C001P001R001A051.skeleton",
              ntu_lines([[("still", s), ("a", x), ("b", y)] for s, x, y in zip(still, a, b, strict=True)]))
    kp = read_ntu_file(f).keypoints
    assert kp.shape == (2, 6, 25, 3)
    np.testing.assert_array_equal(kp[0], np.stack(b).astype(np.float32))
    np.testing.assert_array_equal(kp[1], np.stack(a).astype(np.float32))


def test_frames_with_no_body_or_a_missing_body_are_zeros(tmp_path: Path) -> None:
    one, two = body(4, 1.0), body(4, 0.5)
    frames = [[("1", one[0]), ("2", two[0])], [], [("1", one[2])], [("1", one[3]), ("2", two[3])]]
    kp = read_ntu_file(write(tmp_path / "S001C001P001R001A001.skeleton", ntu_lines(frames))).keypoints
    assert kp.shape == (2, 4, 25, 3)
    assert not kp[:, 1].any()  # the frame with 0 bodies
    assert not kp[1, 2].any()  # body 2 absent in frame 3
    np.testing.assert_array_equal(kp[0, 2], one[2].astype(np.float32))


def test_folder_gives_ntu60_splits(tmp_path: Path) -> None:
    names = ["S001C001P001R001A001", "S001C002P003R001A002", "S002C003P002R002A060", "S017C001P038R001A010"]
    for name in names:
        write(tmp_path / f"{name}.skeleton", ntu_lines([[("1", x)] for x in body(2, 0.1)]))
    ds = read_ntu(tmp_path)
    assert [s.id for s in ds.sequences] == sorted(names)
    assert ds.layout == "ntu25" and ds.num_classes == 60
    assert ds.splits["xsub_train"] == ["S001C001P001R001A001", "S002C003P002R002A060", "S017C001P038R001A010"]
    assert ds.splits["xsub_val"] == ["S001C002P003R001A002"]
    assert ds.splits["xview_train"] == ["S001C002P003R001A002", "S002C003P002R002A060"]
    assert ds.splits["xview_val"] == ["S001C001P001R001A001", "S017C001P038R001A010"]
    assert "xset_train" not in ds.splits
    assert [s.label for s in ds.sequences] == [0, 1, 59, 9]


def test_ntu120_adds_cross_setup_and_its_subjects(tmp_path: Path) -> None:
    for name in ["S018C001P045R001A061", "S019C002P044R001A120", "S001C003P001R001A001"]:
        write(tmp_path / f"{name}.skeleton", ntu_lines([[("1", x)] for x in body(2, 0.1)]))
    ds = read_ntu(tmp_path)  # A061 and S018 make it NTU-120
    assert ds.num_classes == 120
    assert ds.splits["xsub_train"] == ["S001C003P001R001A001", "S018C001P045R001A061"]
    assert ds.splits["xset_train"] == ["S018C001P045R001A061"]
    assert ds.splits["xset_val"] == ["S001C003P001R001A001", "S019C002P044R001A120"]
    with pytest.raises(DataError, match="outside ntu60"):
        read_ntu(tmp_path, variant="ntu60")


def _corrupt(kind: str) -> tuple[list[str], int, str]:
    """Lines of a 3-frame file broken in one way, the 1-based line named, and the message."""
    lines = ntu_lines([[("1", x)] for x in body(3, 0.1)])
    joint = 2 + 27 + 3 + 4  # frame 2's fifth joint line (0-based index)
    if kind == "truncated":
        return lines[:joint], joint + 1, "file ends early"
    if kind == "non-numeric":
        lines[joint] = "0.1 abc " + " ".join(lines[joint].split()[2:])
        return lines, joint + 1, "non-numeric joint value 'abc'"
    if kind == "short joint line":
        lines[joint] = " ".join(lines[joint].split()[:7])
        return lines, joint + 1, "7 values, expected 12"
    if kind == "nan":
        lines[joint] = "nan " + " ".join(lines[joint].split()[1:])
        return lines, joint + 1, "NaN or infinite"
    if kind == "inf":
        lines[joint] = "0.5 inf " + " ".join(lines[joint].split()[2:])
        return lines, joint + 1, "NaN or infinite"
    if kind == "wrong joint count":
        lines[2 + 27 + 2] = "20"
        return lines, 2 + 27 + 3, "20 joints, NTU .skeleton files have 25"
    if kind == "T = 0":
        return ["0"], 1, "T = 0"
    if kind == "bad body count":
        lines[1] = "one"
        return lines, 2, "expected the body count of frame 1, found 'one'"
    if kind == "trailing content":
        return [*lines, "1 2 3"], len(lines) + 1, "unexpected content after the last of 3 frames"
    raise AssertionError(kind)


BAD_KINDS = ["truncated", "non-numeric", "short joint line", "nan", "inf", "wrong joint count", "T = 0",
             "bad body count", "trailing content"]


@pytest.mark.parametrize("kind", BAD_KINDS)
def test_bad_file_raises_data_error_naming_file_line_and_problem(tmp_path: Path, kind: str) -> None:
    lines, lineno, problem = _corrupt(kind)
    f = write(tmp_path / "S001C001P001R001A001.skeleton", lines, "\r\n")
    with pytest.raises(DataError) as info:
        read_ntu(tmp_path)
    assert f"{f}:{lineno}:" in str(info.value)
    assert problem in str(info.value)


def test_bad_file_name_and_bodyless_file_are_reported(tmp_path: Path) -> None:
    f = write(tmp_path / "clip1.skeleton", ntu_lines([[("1", x)] for x in body(2, 0.1)]))
    with pytest.raises(DataError, match="SsssCcccPpppRrrrAaaa"):
        read_ntu_file(f)
    g = write(tmp_path / "S001C001P001R001A001.skeleton", ntu_lines([[], []]))
    with pytest.raises(DataError, match=f"{g}: no body in any frame"):
        read_ntu_file(g)


def test_on_error_skips_the_bad_file_and_keeps_the_rest(tmp_path: Path) -> None:
    write(tmp_path / "S001C001P001R001A001.skeleton", ntu_lines([[("1", x)] for x in body(2, 0.1)]))
    write(tmp_path / "S001C002P002R001A002.skeleton", _corrupt("non-numeric")[0])
    seen: list[DataError] = []
    ds = read_ntu(tmp_path, on_error=seen.append)
    assert [s.id for s in ds.sequences] == ["S001C001P001R001A001"]
    assert all("S001C002P002R001A002" not in ids for ids in ds.splits.values())
    assert len(seen) == 1 and "S001C002P002R001A002.skeleton" in str(seen[0])


def test_layout_with_another_joint_count_is_refused(tmp_path: Path) -> None:
    write(tmp_path / "S001C001P001R001A001.skeleton", ntu_lines([[("1", x)] for x in body(2, 0.1)]))
    with pytest.raises(DataError, match="has 20 joints but NTU .skeleton data has 25"):
        read_ntu(tmp_path, layout="kinect_v1_20")
