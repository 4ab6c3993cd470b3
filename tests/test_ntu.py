"""NTU RGB+D 60/120: raw .skeleton parsing, official lists and splits, preprocessing cache, datasets."""

from __future__ import annotations

import json
import logging
import os
import pickle

import numpy as np
import pytest
import torch


from suite.errors import CorruptDataError, DataNotFoundError, UnknownNameError
from suite.task_registry import get_task
from tasks.ntu.cache import CacheSpec, SourceFile, ensure_cache
from tasks.ntu.preprocess import SPINE_MID, skeleton_to_clip
from tasks.ntu.skeleton import parse_skeleton_bytes, read_skeleton
from tasks.ntu.splits import (
    PROTOCOLS,
    bundled_missing_names,
    is_train,
    parse_sample_name,
    read_missing_list,
    split_names,
)
from tasks.ntu.task import NTU60
from tasks.ntu.tokenize import NOT_AN_INT, tokenize
from tests.helpers.ntu_files import (
    BODY_ID_BASE,
    NTU_SAMPLES,
    format_skeleton,
    random_joints,
    write_sample,
)
from tests.helpers.real_samples import needs_real_samples

needs_samples = needs_real_samples("ntu")


# -- the real .skeleton files --------------------------------------------------------------------
REAL_FILES = [
    # name, frames, distinct body counts per frame, line ending
    ("S001C001P001R001A001", 103, {1}, b"\r\n"),
    ("S003C001P015R001A034", 71, {1}, b"\r\n"),
    ("S001C003P008R002A058", 70, {2}, b"\r\n"),
    ("S001C003P005R002A004", 92, {0}, b"\n"),
    ("S001C003P006R002A008", 79, {0, 1}, b"\n"),
]


def _line_parse_joints(data: bytes) -> np.ndarray:
    """Independent check: every 12-value line of the file, converted by Python's float()."""
    rows = [line.split() for line in data.splitlines()]
    return np.array([[float(v) for v in r] for r in rows if len(r) == 12], dtype=np.float32).reshape(-1, 25, 12)


@needs_samples
@pytest.mark.parametrize("name,frames,body_counts,newline", REAL_FILES)
def test_real_files_parse_to_their_frame_and_body_counts(name, frames, body_counts, newline):
    path = NTU_SAMPLES / f"{name}.skeleton"
    data = path.read_bytes()
    assert newline in data and (newline == b"\r\n") == (b"\r\n" in data)
    skeleton = read_skeleton(path)
    assert skeleton.name == name
    assert skeleton.num_frames == frames
    assert set(skeleton.body_counts.tolist()) == body_counts
    assert skeleton.num_records == int(skeleton.body_counts.sum())
    assert skeleton.joints.shape == (skeleton.num_records, 25, 12)
    np.testing.assert_array_equal(skeleton.joints, _line_parse_joints(data))


@needs_samples
def test_two_body_file_keeps_exact_17_digit_ids():
    skeleton = read_skeleton(NTU_SAMPLES / "S001C003P008R002A058.skeleton")
    assert skeleton.body_ids.dtype == np.int64
    # float64 would turn 72057594037944738 into ...736: the IDs must come through exactly
    assert set(skeleton.body_ids.tolist()) == {72057594037944738, 72057594037944734}
    assert skeleton.body_ids[0] == 72057594037944738 and float(skeleton.body_ids[0]) == 72057594037944736
    np.testing.assert_array_equal(skeleton.frame_index[:4], [0, 0, 1, 1])
    np.testing.assert_array_equal(skeleton.joints[0, 0, :3], np.float32([0.7201789, 0.1647426, 3.561895]))
    np.testing.assert_allclose(skeleton.body_info[0], [0, 1, 1, 1, 1, 0, 0.01119184, -0.256052, 2])


@needs_samples
def test_e_notation_value_is_read_exactly():
    skeleton = read_skeleton(NTU_SAMPLES / "S003C001P015R001A034.skeleton")
    assert np.count_nonzero(skeleton.joints == np.float32(6.026204e-05)) == 1


@needs_samples
def test_file_with_leading_empty_frames():
    skeleton = read_skeleton(NTU_SAMPLES / "S001C003P006R002A008.skeleton")
    assert skeleton.body_counts[:55].sum() == 0 and (skeleton.body_counts[55:] == 1).all()
    assert skeleton.frame_index[0] == 55 and skeleton.num_records == 24


def test_tokenizer_is_exact_on_tricky_tokens():
    text = b"1 -2.5 +3e2 6.026204E-05 72057594037944738 0.12345678901234567 1e-30 -.5\r\n\n7"
    tokens = tokenize(text)
    assert tokens.error_offset == -1
    assert tokens.values.tolist() == [float(t) for t in text.split()]
    assert tokens.ints[4] == 72057594037944738 and tokens.ints[0] == 1 and tokens.ints[1] == NOT_AN_INT
    assert tokens.tokens_per_line.tolist() == [8, 0, 1]


def test_tokenizer_scratch_buffers_do_not_leak_between_files():
    tokenize(_two_body_text(frames=40))  # a long file first: fills many lines of the scratch buffers
    small = tokenize(b"1 2\n3\n4 5 6\n")
    assert small.values.tolist() == [1, 2, 3, 4, 5, 6] and small.tokens_per_line.tolist() == [2, 1, 3, 0]
    assert tokenize(b"").values.size == 0


@pytest.mark.parametrize("bad,offset", [(b"1 2x 3", 2), (b"1 nan", 2), (b"4 1e", 2), (b"-", 0), (b"1.2.3", 0)])
def test_tokenizer_reports_the_first_malformed_token(bad, offset):
    assert tokenize(bad).error_offset == offset


# -- corrupt files -----------------------------------------------------------------------------------
def _two_body_text(frames=3, newline="\n") -> bytes:
    rng = np.random.default_rng(0)
    a, b = random_joints(rng, frames), random_joints(rng, frames, offset=1.0)
    return format_skeleton([[(BODY_ID_BASE + 1, a[f]), (BODY_ID_BASE + 2, b[f])] for f in range(frames)], newline)


@pytest.mark.parametrize(
    "mutate,message",
    [
        (lambda d: d[: len(d) // 2], "expected 12 values"),  # cut inside a joint line
        (lambda d: d[: d.index(b"\n25\n") + 4], "file ends after line 4: expected joint 1 of 25 of body 1 of frame 1"),
        (lambda d: d.replace(b"\n25\n", b"\n24\n", 1), "line 4: expected joint count 25 for body 1 of frame 1, got 24"),
        (lambda d: d.replace(b" 2\n", b"\n", 1), "line 3: expected 10 values (the body line of body 1 of frame 1)"),
        (lambda d: d.replace(b"\n", b" x\n", 1), "line 1: expected 1 value (the frame count), got 2"),
        (lambda d: d + b"1\n", "expected end of file after 3 frames"),
        (lambda d: b"3.5\n" + d[2:], "line 1: expected an integer (the frame count)"),
    ],
)
def test_corrupt_text_names_file_line_and_expectation(mutate, message):
    with pytest.raises(CorruptDataError) as err:
        parse_skeleton_bytes(mutate(_two_body_text()), source="/data/S001C001P001R001A001.skeleton")
    assert "/data/S001C001P001R001A001.skeleton" in str(err.value)
    assert message in str(err.value)


def test_a_short_line_balanced_by_a_long_one_is_still_caught():
    lines = _two_body_text().split(b"\n")
    first_joint, second_joint = 4, 5  # 0-based lines of the first two joints of body 1
    values = lines[first_joint].split() + lines[second_joint].split()
    lines[first_joint], lines[second_joint] = b" ".join(values[:11]), b" ".join(values[11:])
    with pytest.raises(CorruptDataError, match="line 5: expected 12 values .* got 11"):
        parse_skeleton_bytes(b"\n".join(lines), source="x.skeleton")


def test_empty_file_is_corrupt():
    with pytest.raises(CorruptDataError, match="empty"):
        parse_skeleton_bytes(b" \r\n", source="e.skeleton")


def test_lf_and_crlf_parse_identically():
    lf, crlf = _two_body_text(newline="\n"), _two_body_text(newline="\r\n")
    a, b = parse_skeleton_bytes(lf), parse_skeleton_bytes(crlf)
    np.testing.assert_array_equal(a.joints, b.joints)
    assert a.body_ids.tolist() == b.body_ids.tolist() == [BODY_ID_BASE + 1, BODY_ID_BASE + 2] * 3


# -- official lists and splits ---------------------------------------------------------------------
@needs_samples
def test_official_missing_lists():
    ntu60 = read_missing_list(NTU_SAMPLES / "NTU_RGBD_samples_with_missing_skeletons.txt")
    ntu120 = read_missing_list(NTU_SAMPLES / "NTU_RGBD120_samples_with_missing_skeletons.txt")
    assert len(ntu60) == len(set(ntu60)) == 302
    assert len(ntu120) == len(set(ntu120)) == 535
    assert set(ntu60) < set(ntu120)
    assert bundled_missing_names("ntu60") == frozenset(ntu60)
    assert bundled_missing_names("ntu120") == frozenset(ntu120)
    available = set((NTU_SAMPLES / "ntu120_available_names.txt").read_text().split())
    assert not available & set(ntu120) and len(available) + len(ntu120) == 114_480


@needs_samples
@pytest.mark.parametrize(
    "dataset,protocol,train,evaluation",
    [
        ("ntu60", "xsub", 40_091, 16_487),
        ("ntu60", "xview", 37_646, 18_932),
        ("ntu120", "xsub", 63_026, 50_919),
        ("ntu120", "xset", 54_468, 59_477),
    ],
)
def test_split_sizes_on_the_real_name_lists(dataset, protocol, train, evaluation):
    names = (NTU_SAMPLES / f"{dataset}_available_names.txt").read_text().split()
    assert len(split_names(names, dataset, protocol, "train")) == train
    assert len(split_names(names, dataset, protocol, "eval")) == evaluation


def test_protocol_rules():
    sample = parse_sample_name("S018C001P045R002A061")
    assert (sample.setup, sample.camera, sample.subject, sample.replication, sample.label) == (18, 1, 45, 2, 60)
    assert is_train(sample, "ntu120", "xsub") and is_train(sample, "ntu120", "xset")
    assert not is_train(parse_sample_name("S001C001P003R001A001"), "ntu60", "xview")
    assert PROTOCOLS == {"ntu60": ("xsub", "xview"), "ntu120": ("xsub", "xset")}
    with pytest.raises(UnknownNameError, match="valid: xsub, xset"):
        is_train(sample, "ntu120", "xview")
    with pytest.raises(ValueError, match="not an NTU sample name"):
        parse_sample_name("S1C1P1R1A1")


# -- preprocessing ---------------------------------------------------------------------------------
@needs_samples
def test_clip_keeps_two_bodies_centred_and_resampled():
    clip = skeleton_to_clip(read_skeleton(NTU_SAMPLES / "S001C003P008R002A058.skeleton"), frames=64, max_bodies=2)
    assert clip.shape == (64, 2, 25, 3) and clip.dtype == np.float32
    np.testing.assert_allclose(clip[0, 0, SPINE_MID], 0.0, atol=1e-6)
    assert np.abs(clip[:, 1]).sum() > 0  # the second actor is kept


@needs_samples
def test_clip_drops_leading_empty_frames_and_rejects_bodiless_files():
    clip = skeleton_to_clip(read_skeleton(NTU_SAMPLES / "S001C003P006R002A008.skeleton"), frames=32, max_bodies=2)
    assert (np.abs(clip[:, 0]).sum(axis=(1, 2)) > 0).all()  # every frame has the actor
    assert not clip[:, 1].any()
    with pytest.raises(CorruptDataError, match="no body in any of its 92 frames"):
        skeleton_to_clip(read_skeleton(NTU_SAMPLES / "S001C003P005R002A004.skeleton"), frames=32, max_bodies=2)


def test_main_bodies_are_chosen_by_motion_and_short_tracks_dropped():
    rng = np.random.default_rng(1)
    frames = 40
    still = random_joints(rng, frames)
    still[:, :, :3] = still[:1, :, :3]  # does not move at all
    moving = random_joints(rng, frames, offset=1.0)
    blip = random_joints(rng, 5, offset=-1.0) * 50  # wild, but only 5 frames: a spurious detection
    frames_with_bodies = [[(BODY_ID_BASE + 1, still[f]), (BODY_ID_BASE + 2, moving[f])] for f in range(frames)]
    for f in range(5):
        frames_with_bodies[f].append((BODY_ID_BASE + 3, blip[f]))
    text = format_skeleton(frames_with_bodies)
    clip = skeleton_to_clip(parse_skeleton_bytes(text), frames=frames, max_bodies=2)
    # slot 0 is the moving body, slot 1 the still one (centred on the moving body's spine)
    origin = moving[0, SPINE_MID, :3]
    np.testing.assert_allclose(clip[:, 0], moving[:, :, :3] - origin, atol=1e-5)
    np.testing.assert_allclose(clip[:, 1], still[:, :, :3] - origin, atol=1e-5)


# -- end to end through the task -------------------------------------------------------------------
TRAIN_XSUB = ["S001C001P001R001A001", "S001C002P002R001A005", "S002C003P004R002A050"]
EVAL_XSUB = ["S001C001P003R001A001", "S003C002P006R002A010"]


def _make_root(tmp_path, extra_names=()):
    rng = np.random.default_rng(7)
    folder = tmp_path / "ntu60" / "nturgb+d_skeletons"
    for i, name in enumerate(TRAIN_XSUB + EVAL_XSUB + list(extra_names)):
        write_sample(folder, name, rng, frames=20 + 3 * i, bodies=2 if name.endswith("A050") else 1,
                     newline="\r\n" if i % 2 else "\n")
    return tmp_path


def _manifest(root):
    (manifest,) = (root / "ntu60" / "cache").glob("*/manifest.json")
    return manifest


def test_real_format_files_build_train_and_eval_datasets(tmp_path):
    # one sample on the official missing list and one NTU120-only sample: both left out, and said so
    root = _make_root(tmp_path, extra_names=["S001C002P005R002A008", "S018C001P045R001A061"])
    task = get_task("ntu60")
    train = task.build_dataset("train", data=tmp_path, protocol="xsub")
    evaluation = task.build_dataset("eval", data=tmp_path)  # xsub is the default protocol
    assert train.names == TRAIN_XSUB and evaluation.names == EVAL_XSUB
    assert train.excluded_missing == 1 and evaluation.excluded_missing == 0 and train.skipped == 0
    x, label = train[2]
    assert x.shape == (4, 3, 16, 52) == task.sample_shape() and x.dtype == torch.float32
    assert label == 49 and isinstance(label, int)
    assert [evaluation[i][1] for i in range(len(evaluation))] == [0, 9]
    assert x[:, :, :, 26:51].abs().sum() > 0 and x[:, :, :, 25].abs().sum() == 0  # body 2; pad column
    manifest = json.loads(_manifest(root).read_text())
    assert manifest["clips"]["shape"] == [5, 64, 2, 25, 3]
    labels = {s["name"]: s["label"] for s in manifest["samples"]}
    assert labels == dict(zip(TRAIN_XSUB + EVAL_XSUB, [0, 4, 49, 0, 9]))
    sample = manifest["samples"][0]
    source = root / "ntu60" / sample["path"]
    assert sample["size"] == source.stat().st_size and sample["mtime_ns"] == source.stat().st_mtime_ns


def test_static_encoder_and_xview_protocol(tmp_path):
    _make_root(tmp_path)
    task = NTU60(encoder="static")
    train = task.build_dataset("train", data=tmp_path, protocol="xview", augment=False)
    assert train.names == ["S001C002P002R001A005", "S002C003P004R002A050", "S003C002P006R002A010"]
    x, _ = train[0]
    assert x.shape == (3, 64, 52) == task.sample_shape()


def test_augmentation_changes_coordinates_but_not_absent_bodies(tmp_path):
    _make_root(tmp_path)
    task = get_task("ntu60")
    plain = task.build_dataset("train", data=tmp_path, augment=False)
    torch.manual_seed(0)
    augmented = task.build_dataset("train", data=tmp_path, augment=True)
    x_plain, x_aug = plain[0][0], augmented[0][0]
    assert not torch.equal(x_plain, x_aug)
    assert x_aug[:, :, :, 26:].abs().sum() == 0  # one-actor sample: body slot 2 stays zero
    assert torch.allclose(x_plain.norm(), x_aug.norm(), rtol=0.15)  # rotation + at most 10% scale


def test_cache_is_reused_then_rebuilt_incrementally_when_a_file_changes(tmp_path, caplog):
    root = _make_root(tmp_path)
    task = get_task("ntu60")
    first = task.build_dataset("train", data=tmp_path, augment=False)
    manifest = _manifest(root)
    stamp, text = manifest.stat().st_mtime_ns, manifest.read_text()
    before = [first[i][0] for i in range(len(first))]

    again = task.build_dataset("eval", data=tmp_path)  # other split, same cache
    assert manifest.stat().st_mtime_ns == stamp and manifest.read_text() == text
    assert len(again) == len(EVAL_XSUB)

    changed = root / "ntu60" / "nturgb+d_skeletons" / f"{TRAIN_XSUB[1]}.skeleton"
    write_sample(changed.parent, TRAIN_XSUB[1], np.random.default_rng(99), frames=33)
    os.utime(changed, ns=(stamp + 10**9, stamp + 10**9))
    with caplog.at_level(logging.INFO, logger="tasks.ntu.cache"):
        rebuilt = task.build_dataset("train", data=tmp_path, augment=False)
    assert "preprocessing 1 skeleton files" in caplog.text and "4 reused" in caplog.text
    sizes = {s["name"]: s["size"] for s in json.loads(_manifest(root).read_text())["samples"]}
    assert sizes[TRAIN_XSUB[1]] == changed.stat().st_size
    after = [rebuilt[i][0] for i in range(len(rebuilt))]
    assert torch.equal(after[0], before[0]) and torch.equal(after[2], before[2])
    assert not torch.equal(after[1], before[1])


def test_truncated_file_is_named_and_skip_corrupt_counts_it(tmp_path, caplog):
    root = _make_root(tmp_path)
    broken = root / "ntu60" / "nturgb+d_skeletons" / f"{TRAIN_XSUB[0]}.skeleton"
    broken.write_bytes(broken.read_bytes()[:-500])
    task = get_task("ntu60")
    with pytest.raises(CorruptDataError) as err:
        task.build_dataset("train", data=tmp_path)
    assert str(broken) in str(err.value) and "line" in str(err.value) and "skip_corrupt" in str(err.value)
    with caplog.at_level(logging.WARNING, logger="tasks.ntu"):
        train = task.build_dataset("train", data=tmp_path, skip_corrupt=True)
    assert train.skipped == 1 and train.skipped_names == [TRAIN_XSUB[0]] and train.names == TRAIN_XSUB[1:]
    assert "skipped 1 corrupt file" in caplog.text
    assert len(task.build_dataset("eval", data=tmp_path)) == 2  # the other split is unaffected


def test_ntu120_reads_both_official_folders_and_defaults_to_xsub(tmp_path):
    rng = np.random.default_rng(5)
    first, second = tmp_path / "ntu120" / "nturgb+d_skeletons", tmp_path / "ntu120" / "nturgbd_skeletons_s018_to_s032"
    write_sample(first, "S001C001P001R001A001", rng)  # xsub train, xset eval (odd setup)
    write_sample(first, "S002C001P003R001A060", rng)  # xsub eval, xset train
    write_sample(second, "S018C002P045R001A061", rng)  # xsub train, xset train
    write_sample(second, "S019C003P044R002A120", rng, newline="\n")  # xsub eval, xset eval
    task = get_task("ntu120")
    train = task.build_dataset("train", data=tmp_path, augment=False)
    assert train.names == ["S001C001P001R001A001", "S018C002P045R001A061"] and train.targets == [0, 60]
    evaluation = task.build_dataset("eval", data=tmp_path, protocol="xset")
    assert evaluation.names == ["S001C001P001R001A001", "S019C003P044R002A120"] and evaluation.targets == [0, 119]
    assert evaluation[1][0].shape == (4, 3, 16, 52)
    # an NTU120 folder serves ntu60 as well: only setups 1-17 and actions 1-60 are used
    (tmp_path / "ntu60").symlink_to(tmp_path / "ntu120")
    assert get_task("ntu60").build_dataset("eval", data=tmp_path).names == ["S002C001P003R001A060"]
    assert len(list((tmp_path / "ntu120" / "cache").glob("*/manifest.json"))) == 2  # one per dataset, no clash

    write_sample(second, "S001C001P001R001A001", rng)  # the same sample in two folders
    with pytest.raises(CorruptDataError, match="S001C001P001R001A001 is in .* twice"):
        task.build_dataset("train", data=tmp_path)


def test_missing_data_and_empty_split_errors(tmp_path):
    task = get_task("ntu60")
    with pytest.raises(DataNotFoundError) as err:
        task.build_dataset("train", data=tmp_path / "nowhere")
    message = str(err.value)
    assert "'ntu60'" in message and "nturgb+d_skeletons" in message and "rose1.ntu.edu.sg" in message
    assert not task.is_available(tmp_path / "nowhere")
    with pytest.raises(DataNotFoundError, match="cannot be downloaded automatically"):
        task.build_dataset("train", data=tmp_path / "nowhere", download=True)

    (tmp_path / "ntu60").mkdir()
    with pytest.raises(DataNotFoundError, match="no ntu60 .skeleton files"):
        task.build_dataset("train", data=tmp_path)

    rng = np.random.default_rng(3)
    write_sample(tmp_path / "ntu60", "S001C001P001R001A001", rng)  # a flat folder works too
    assert task.is_available(tmp_path)
    assert len(task.build_dataset("train", data=tmp_path)) == 1
    with pytest.raises(DataNotFoundError, match=r"'ntu60' \(xsub, eval split\) is empty"):
        task.build_dataset("eval", data=tmp_path)


def test_parallel_preprocessing_matches_serial(tmp_path, monkeypatch, caplog):
    monkeypatch.setattr("tasks.ntu.cache._IN_PROCESS_BELOW", 0)  # use the pool even for a few files
    rng = np.random.default_rng(11)
    names = [f"S001C00{1 + i % 3}P{1 + i % 40:03d}R001A{1 + i % 60:03d}" for i in range(36)]
    paths = [write_sample(tmp_path / "src", name, rng, frames=12, bodies=1 + i % 2) for i, name in enumerate(names)]
    sources = [SourceFile(p.stem, p, p.name, p.stat().st_size, p.stat().st_mtime_ns, 0) for p in paths]
    spec = CacheSpec(frames=16, max_bodies=2)
    serial = ensure_cache(sources, tmp_path / "serial", spec, workers=1)
    with caplog.at_level(logging.DEBUG, logger="tasks"):  # the worker pool logs from tasks.preprocessing_cache
        parallel = ensure_cache(sources, tmp_path / "parallel", spec, workers=2)
    assert "in 2 worker processes" in caplog.text
    np.testing.assert_array_equal(serial.clips(), parallel.clips())
    assert [s["error"] for s in parallel.samples] == [None] * len(names)


def test_dataset_pickles_without_its_memory_map_and_feeds_the_model(tmp_path):
    from suite.models import create_model

    _make_root(tmp_path)
    task = get_task("ntu60")
    train = task.build_dataset("train", data=tmp_path, augment=False)
    first = train[0][0]
    clone = pickle.loads(pickle.dumps(train))
    assert clone._clips is None and torch.equal(clone[0][0], first)
    batch = torch.stack([train[i][0] for i in range(len(train))])
    model = create_model("spikformer-1-32", **task.model_kwargs()).eval()
    with torch.no_grad():
        assert model(batch).shape == (len(train), 60)
