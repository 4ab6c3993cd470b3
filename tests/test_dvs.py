"""DVS128 Gesture and CIFAR10-DVS: file readers, event-to-frame integration, frame caches and datasets."""

from __future__ import annotations

import json
import os
import shutil
import sys

import numpy as np
import pytest
import torch

from suite.errors import CorruptDataError, DataNotFoundError, MissingExtraError
from suite.task_registry import get_task
from tasks.events.aedat import read_aedat4_events, read_aedat31_polarity, read_cifar10_dvs_aedat, sniff_version
from tasks.events.augment import apply_op, augment_event_frames
from tasks.events.dvs_gesture import read_gesture_labels
from tasks.events.stream import check_sensor_range, events_to_frames, make_events
from tests.helpers.dvs_files import (
    CIFAR10_DVS_CLASSES,
    REAL_DVS,
    make_cifar10_dvs_release,
    make_gesture_release,
    polarity_packet,
    special_packet,
    write_aedat31,
    write_aerdat2,
)
from tests.helpers.real_samples import needs_real_samples

needs_real_dvs = needs_real_samples("dvs")


@pytest.fixture(autouse=True)
def _one_worker(monkeypatch):
    # Cache builds run in-process unless a test asks for worker processes.
    monkeypatch.setenv("SUITE_PREPROCESS_WORKERS", "1")


def realistic_stream(n: int, seed: int = 0) -> np.ndarray:
    """A moving blob of events plus background noise, sorted in time, like a gesture recording."""
    rng = np.random.default_rng(seed)
    t = np.sort(rng.integers(0, 6_000_000, n))
    phase = t / 6_000_000 * 2 * np.pi
    blob = rng.random(n) < 0.8
    x = np.where(blob, 64 + 40 * np.cos(phase) + rng.normal(0, 6, n), rng.integers(0, 128, n))
    y = np.where(blob, 64 + 40 * np.sin(phase) + rng.normal(0, 6, n), rng.integers(0, 128, n))
    return make_events(t=t, x=np.clip(x, 0, 127), y=np.clip(y, 0, 127), p=rng.integers(0, 2, n))


# -- events -> frames -------------------------------------------------------------------------
def test_frames_equal_tonic_to_frame_when_slices_divide_evenly():
    import tonic

    events = realistic_stream(16 * 2_500)
    ours = events_to_frames(events, 16)
    theirs = tonic.transforms.ToFrame(sensor_size=(128, 128, 2), n_event_bins=16)(events)
    assert ours.shape == (16, 2, 128, 128) and ours.dtype == np.float32
    np.testing.assert_array_equal(ours, theirs)


def test_frames_equal_spikingjelly_including_the_remainder():
    from spikingjelly.datasets.utils import integrate_events_by_fixed_frames_number

    events = realistic_stream(10_007, seed=1)  # 10_007 % 16 != 0: the last frame takes 7 extra events
    ours = events_to_frames(events, 16)
    as_dict = {k: events[k].astype(np.int64) for k in ("t", "x", "y", "p")}
    reference = integrate_events_by_fixed_frames_number(as_dict, "number", 16, 128, 128)
    np.testing.assert_array_equal(ours, reference)
    assert ours.sum() == 10_007
    assert ours[-1].sum() == 10_007 // 16 + 10_007 % 16


def test_frames_count_repeated_pixels_and_polarity_channels():
    events = make_events(t=[0, 1, 2, 3], x=[5, 5, 5, 7], y=[9, 9, 9, 2], p=[1, 1, 0, 0])
    frames = events_to_frames(events, 1)
    assert frames[0, 1, 9, 5] == 2 and frames[0, 0, 9, 5] == 1 and frames[0, 0, 2, 7] == 1
    assert frames.sum() == 4


def test_fewer_events_than_frames_go_to_the_last_frame():
    frames = events_to_frames(make_events(t=[0, 1], x=[1, 2], y=[3, 4], p=[0, 1]), 4)
    assert frames[:3].sum() == 0 and frames[3].sum() == 2


def test_split_by_time_uses_equal_durations_and_keeps_every_event():
    t = np.arange(400)  # one event per microsecond: 100 per quarter
    events = make_events(t=t, x=t % 128, y=t // 128, p=t % 2)
    frames = events_to_frames(events, 4, split_by="time")
    assert frames.reshape(4, -1).sum(axis=1).tolist() == [100, 100, 100, 100]
    assert frames[0, 0, 0, 0] == 1 and frames[3, 1, 3, 15] == 1  # t=0 -> first frame; t=399 -> (x=15, y=3) last


def test_sensor_range_check_names_the_origin():
    events = make_events(t=[0, 1], x=[3, 200], y=[4, 5], p=[0, 1])
    with pytest.raises(CorruptDataError, match=r"rec\.aedat.*x in \[3, 200\].*128 wide"):
        check_sensor_range(events, (128, 128), "rec.aedat")


# -- AEDAT 3.1 (DVS128 Gesture) ----------------------------------------------------------------
def _roundtrip_packets():
    first = polarity_packet([0, 127, 64], [0, 5, 127], [1, 0, 1], [10, 20, 30], valid=[True, False, True])
    second = polarity_packet([1, 2], [3, 4], [0, 1], [5, 7], overflow=1)
    return [special_packet(), first, second]


def test_aedat31_polarity_roundtrip(tmp_path):
    path = write_aedat31(tmp_path / "user01_led.aedat", _roundtrip_packets())
    events = read_aedat31_polarity(path)
    # the invalid event (127, 5) and the special event are gone; overflow 1 adds 2**31 to timestamps
    assert events["x"].tolist() == [0, 64, 1, 2]
    assert events["y"].tolist() == [0, 127, 3, 4]
    assert events["p"].tolist() == [1, 1, 0, 1]
    assert events["t"].tolist() == [10, 30, 2**31 + 5, 2**31 + 7]
    assert sniff_version(path) == "3.1"


def test_aedat31_reader_matches_spikingjelly(tmp_path):
    from spikingjelly.datasets.utils import load_aedat_v3

    make_gesture_release(tmp_path, ["user01_led"], [])
    ours = read_aedat31_polarity(tmp_path / "user01_led.aedat")
    theirs = load_aedat_v3(tmp_path / "user01_led.aedat")  # the reader Spikformer's pipeline used
    assert ours.size == 3 * 300 + 3 * 50
    for field in ("t", "x", "y", "p"):
        np.testing.assert_array_equal(ours[field], theirs[field])


def test_aedat31_truncated_packet_is_named(tmp_path):
    path = write_aedat31(tmp_path / "user02_led.aedat", _roundtrip_packets())
    path.write_bytes(path.read_bytes()[:-5])
    with pytest.raises(CorruptDataError, match=r"user02_led\.aedat: packet at byte \d+ says 2 events.*truncated"):
        read_aedat31_polarity(path)


def test_aedat31_missing_end_header(tmp_path):
    header = b"#!AER-DAT3.1\r\n#Format: RAW\r\n"  # cut before '#!END-HEADER'
    path = write_aedat31(tmp_path / "user03_led.aedat", _roundtrip_packets(), header=header)
    with pytest.raises(CorruptDataError, match="user03_led.aedat: the AEDAT 3.1 header has no '#!END-HEADER'"):
        read_aedat31_polarity(path)


def test_aedat31_inconsistent_packet_header(tmp_path):
    packet = bytearray(polarity_packet([1], [1], [1], [1]))
    packet[24:28] = (5).to_bytes(4, "little")  # eventValid 5 > eventNumber 1
    path = write_aedat31(tmp_path / "user04_led.aedat", [bytes(packet)])
    with pytest.raises(CorruptDataError, match="inconsistent.*eventValid=5"):
        read_aedat31_polarity(path)


@needs_real_dvs
def test_real_labels_csv_parses():
    segments = read_gesture_labels(REAL_DVS / "user01_natural_labels.csv")
    assert segments.shape == (12, 3)
    assert segments[0].tolist() == [1, 53036986, 59508469]
    assert set(segments[:, 0]) == set(range(1, 12)) and (segments[:, 0] == 8).sum() == 2
    assert (segments[:, 1] < segments[:, 2]).all()


def test_bad_labels_csv_rows_are_named(tmp_path):
    path = tmp_path / "user05_led_labels.csv"
    path.write_text("class,startTime_usec,endTime_usec\n3,10,20\n12,30,40\n")
    with pytest.raises(CorruptDataError, match="user05_led_labels.csv: line 3 has class 12"):
        read_gesture_labels(path)
    path.write_text("class,start,end\n3,10,20\n")
    with pytest.raises(CorruptDataError, match="expected the header class,startTime_usec,endTime_usec"):
        read_gesture_labels(path)


# -- AEDAT 4.0 (the real sample) ---------------------------------------------------------------
def test_without_the_aedat_package_the_error_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "aedat", None)  # what `import aedat` meets when it is not installed
    with pytest.raises(MissingExtraError, match=r"rec\.aedat4: reading AEDAT 4\.0 files needs .*pip install 'spikformer-suite\[aedat\]'"):
        read_aedat4_events("rec.aedat4")


@needs_real_dvs
def test_aedat4_sample_is_recognised_and_read():
    sample = REAL_DVS / "tonic_sample.aedat4"
    assert sniff_version(sample) == "4.0"
    with pytest.raises(CorruptDataError, match="this is AEDAT 4.0, expected AEDAT 3.1"):
        read_aedat31_polarity(sample)
    with pytest.raises(CorruptDataError, match="this is AEDAT 4.0, expected AER-DAT 2.0"):
        read_cifar10_dvs_aedat(sample)
    events = read_aedat4_events(sample)
    assert events.size == 111_954
    assert events[0].tolist() == (1605537493718345, 154, 204, 0)
    assert events[-1].tolist() == (1605537494308262, 88, 237, 1)
    assert (np.diff(events["t"]) >= 0).all() and events["x"].max() == 319 and events["y"].max() == 239
    with pytest.raises(CorruptDataError, match="do not fit a 128x128"):  # a 320x240 DAVIS, not a DVS128
        check_sensor_range(events, (128, 128), str(sample))


# -- AER-DAT 2.0 (CIFAR10-DVS) -----------------------------------------------------------------
@needs_real_dvs
def test_aerdat2_roundtrip_uses_spikingjelly_orientation(tmp_path):
    column, row, bit0, t = [0, 127, 10, 3], [0, 5, 127, 64], [1, 0, 0, 1], [0, 100, 4_000_000_000, 7]
    path = write_aerdat2(tmp_path / "cifar10_cat_0.aedat", column, row, bit0, t)
    events = read_cifar10_dvs_aedat(path)
    assert events["x"].tolist() == [127 - r for r in row]
    assert events["y"].tolist() == [127 - c for c in column]
    assert events["p"].tolist() == [0, 1, 1, 0]
    assert events["t"].tolist() == t  # u32 timestamps above 2**31 stay positive
    assert sniff_version(path) == "2.0"


@needs_real_dvs
def test_aerdat2_reader_matches_spikingjelly(tmp_path):
    from spikingjelly.datasets.cifar10_dvs import _load_origin_data  # what Spikformer's loader called

    make_cifar10_dvs_release(tmp_path, per_class=1, events=500)
    path = tmp_path / "frog" / "cifar10_frog_0.aedat"
    ours, theirs = read_cifar10_dvs_aedat(path), _load_origin_data(path)
    for field in ("t", "x", "y", "p"):
        np.testing.assert_array_equal(ours[field], theirs[field])


@needs_real_dvs
def test_aerdat2_truncated_and_empty(tmp_path):
    path = write_aerdat2(tmp_path / "cifar10_cat_1.aedat", [1, 2], [3, 4], [0, 1], [5, 6])
    path.write_bytes(path.read_bytes()[:-3])
    with pytest.raises(CorruptDataError, match=r"cifar10_cat_1\.aedat: the event data is 13 bytes.*truncated"):
        read_cifar10_dvs_aedat(path)
    assert read_cifar10_dvs_aedat(REAL_DVS / "tonic_sample_aedat_header.aedat").size == 0


# -- DVS128 Gesture task -----------------------------------------------------------------------
TRAIN_TRIALS = ["user01_fluorescent", "user02_led", "user03_natural"]
TEST_TRIALS = ["user24_lab"]


def test_gesture_dataset_from_the_original_release(tmp_path):
    trials = make_gesture_release(tmp_path / "dvs128-gesture", TRAIN_TRIALS, TEST_TRIALS)
    task = get_task("dvs128-gesture")
    train = task.build_dataset("train", data=tmp_path, time_steps=4, augment=False)
    expected = [cls - 1 for name in TRAIN_TRIALS for cls, _, _ in trials[name].segments]
    assert len(train) == 9 and train.targets == expected and train.skipped == 0
    for index in range(len(train)):
        x, label = train[index]
        assert x.shape == (4, 2, 128, 128) and x.dtype == torch.float32
        assert label == expected[index]
        assert x.sum() == 300  # exactly the events inside the segment, none from between segments
    evaluation = task.build_dataset("eval", data=tmp_path, time_steps=4)
    assert evaluation.targets == [cls - 1 for cls, _, _ in trials["user24_lab"].segments]
    assert evaluation.augment is False and train.augment is False


def test_gesture_batches_fit_the_task_model(tmp_path):
    from suite.models import create_model

    make_gesture_release(tmp_path / "dvs128-gesture", TRAIN_TRIALS, TEST_TRIALS)
    task = get_task("dvs128-gesture")
    loader = torch.utils.data.DataLoader(task.build_dataset("train", data=tmp_path, time_steps=2), batch_size=3)
    x, y = next(iter(loader))
    assert x.shape == (3, 2, 2, 128, 128) and y.dtype == torch.int64
    model = create_model("spikformer-1-32", **task.model_kwargs(time_steps=2)).eval()
    with torch.no_grad():
        logits = model(x)
    assert logits.shape == (3, 11) and torch.isfinite(logits).all()


def test_gesture_cache_is_reused_then_rebuilt_when_stale(tmp_path):
    folder = tmp_path / "dvs128-gesture"
    make_gesture_release(folder, TRAIN_TRIALS, TEST_TRIALS)
    task = get_task("dvs128-gesture")
    first = task.build_dataset("eval", data=tmp_path, time_steps=4)
    manifest_path = first.directory / "manifest.json"
    built_at = manifest_path.stat().st_mtime_ns
    again = task.build_dataset("eval", data=tmp_path, time_steps=4)
    assert manifest_path.stat().st_mtime_ns == built_at and again.files == first.files
    # Relabel the test trial's first segment: the labels file changes, so the cache is rebuilt.
    labels = folder / "user24_lab_labels.csv"
    labels.write_text(labels.read_text().replace("\n10,", "\n2,", 1))
    os.utime(labels, ns=(built_at + 10**9, built_at + 10**9))
    rebuilt = task.build_dataset("eval", data=tmp_path, time_steps=4)
    assert rebuilt.targets[0] == 1 and first.targets[0] == 9
    assert json.loads(manifest_path.read_text())["samples"][0]["label"] == 1
    other_t = task.build_dataset("eval", data=tmp_path, time_steps=2)
    assert other_t.directory != rebuilt.directory and other_t[0][0].shape == (2, 2, 128, 128)


def test_gesture_cache_build_with_worker_processes(tmp_path, monkeypatch):
    monkeypatch.setenv("SUITE_PREPROCESS_WORKERS", "2")
    make_gesture_release(tmp_path / "dvs128-gesture" / "DvsGesture", TRAIN_TRIALS, TEST_TRIALS)
    train = get_task("dvs128-gesture").build_dataset("train", data=tmp_path, time_steps=4, augment=False)
    assert len(train) == 9 and all(train[i][0].sum() == 300 for i in range(len(train)))


@needs_real_dvs
def test_gesture_aedat4_in_the_release_is_reported_or_skipped(tmp_path):
    folder = tmp_path / "dvs128-gesture"
    make_gesture_release(folder, TRAIN_TRIALS, TEST_TRIALS)
    shutil.copy(REAL_DVS / "tonic_sample.aedat4", folder / "user02_led.aedat")
    task = get_task("dvs128-gesture")
    with pytest.raises(CorruptDataError, match=r"user02_led\.aedat: this is AEDAT 4\.0, expected AEDAT 3\.1"):
        task.build_dataset("train", data=tmp_path, time_steps=4)
    train = task.build_dataset("train", data=tmp_path, time_steps=4, skip_corrupt=True)
    assert train.skipped == 1 and len(train) == 6
    assert "user02_led" in train.skipped_files[0]["source"]
    with pytest.raises(CorruptDataError, match="--skip-corrupt"):  # the cached skip still needs the flag
        task.build_dataset("train", data=tmp_path, time_steps=4)


def test_gesture_truncated_recording_is_skipped_and_counted(tmp_path):
    folder = tmp_path / "dvs128-gesture"
    make_gesture_release(folder, TRAIN_TRIALS, TEST_TRIALS)
    recording = folder / "user03_natural.aedat"
    recording.write_bytes(recording.read_bytes()[:-100])
    task = get_task("dvs128-gesture")
    with pytest.raises(CorruptDataError, match="user03_natural.aedat: packet at byte .* truncated"):
        task.build_dataset("train", data=tmp_path, time_steps=4)
    train = task.build_dataset("train", data=tmp_path, time_steps=4, skip_corrupt=True)
    assert train.skipped == 1 and len(train) == 6


def test_gesture_from_tonic_layout(tmp_path):
    rng = np.random.default_rng(3)
    split_dir = tmp_path / "dvs128-gesture" / "DVSGesture" / "ibmGestureTest" / "user24_led"
    split_dir.mkdir(parents=True)
    arrays = {}
    for label in (0, 4, 10):  # tonic's files: (N, 4) x, y, p, t in milliseconds
        n = 120 + label
        arrays[label] = np.stack([rng.integers(0, 128, n), rng.integers(0, 128, n), rng.integers(0, 2, n),
                                  np.sort(rng.integers(0, 6000, n))], axis=1)
        np.save(split_dir / f"{label}.npy", arrays[label])
    evaluation = get_task("dvs128-gesture").build_dataset("eval", data=tmp_path, time_steps=4)
    assert sorted(evaluation.targets) == [0, 4, 10]
    for index, label in enumerate(evaluation.targets):
        a = arrays[label]
        expected = events_to_frames(make_events(t=a[:, 3] * 1000, x=a[:, 0], y=a[:, 1], p=a[:, 2]), 4)
        np.testing.assert_array_equal(evaluation[index][0].numpy(), expected)
    with pytest.raises(DataNotFoundError, match="ibmGestureTrain is missing"):
        get_task("dvs128-gesture").build_dataset("train", data=tmp_path, time_steps=4)


def test_gesture_prefers_the_original_release_when_both_layouts_exist(tmp_path):
    folder = tmp_path / "dvs128-gesture"
    make_gesture_release(folder, TRAIN_TRIALS, TEST_TRIALS)
    (folder / "DVSGesture" / "ibmGestureTest" / "user24_led").mkdir(parents=True)
    evaluation = get_task("dvs128-gesture").build_dataset("eval", data=tmp_path, time_steps=4)
    assert len(evaluation) == 3 and "/ibm/" in str(evaluation.directory)


def test_gesture_missing_data_and_empty_split(tmp_path):
    task = get_task("dvs128-gesture")
    assert not task.is_available(tmp_path)
    with pytest.raises(DataNotFoundError) as caught:
        task.build_dataset("train", data=tmp_path)
    message = str(caught.value)
    assert "'dvs128-gesture'" in message and "trials_to_train.txt" in message and "ibmGestureTrain" in message
    assert "https://research.ibm.com/interactive/dvsgesture/" in message
    make_gesture_release(tmp_path / "dvs128-gesture", TRAIN_TRIALS, [])
    assert task.is_available(tmp_path)
    with pytest.raises(DataNotFoundError, match="the eval split is empty"):
        task.build_dataset("eval", data=tmp_path, time_steps=4)


# -- CIFAR10-DVS task --------------------------------------------------------------------------
@needs_real_dvs
def test_cifar10_dvs_nine_to_one_split(tmp_path):
    counts = make_cifar10_dvs_release(tmp_path / "cifar10-dvs", per_class=11)
    task = get_task("cifar10-dvs")
    train = task.build_dataset("train", data=tmp_path, time_steps=4, augment=False)
    evaluation = task.build_dataset("eval", data=tmp_path, time_steps=4)
    assert len(train) == 100 and len(evaluation) == 10  # ceil(0.9 * 11) = 10 per class
    assert np.bincount(train.targets).tolist() == [10] * 10 and evaluation.targets == list(range(10))
    # lexicographic order (0, 1, 10, 2, ..., 9): the last name, cifar10_<class>_9, evaluates
    assert [f.split("-")[0] for f in evaluation.files] == [f"{c}_cifar10_{c}_9" for c in CIFAR10_DVS_CLASSES]
    x, label = evaluation[3]
    assert label == 3 and x.shape == (4, 2, 128, 128) and x.sum() == counts["cat/9"]


@needs_real_dvs
def test_cifar10_dvs_wrong_or_missing_class_folder(tmp_path):
    folder = tmp_path / "cifar10-dvs"
    make_cifar10_dvs_release(folder, per_class=2, events=20)
    task = get_task("cifar10-dvs")
    (folder / "truck").rename(folder / "Truck")
    with pytest.raises(DataNotFoundError, match="Truck.*not class folders.*airplane, automobile"):
        task.build_dataset("train", data=tmp_path, time_steps=4)
    shutil.rmtree(folder / "Truck")
    with pytest.raises(DataNotFoundError, match="lacks the class folder.*truck"):
        task.build_dataset("train", data=tmp_path, time_steps=4)


@needs_real_dvs
def test_cifar10_dvs_corrupt_file_raises_or_is_skipped(tmp_path):
    folder = tmp_path / "cifar10-dvs"
    make_cifar10_dvs_release(folder, per_class=3, events=30)
    bad = folder / "dog" / "cifar10_dog_1.aedat"
    bad.write_bytes(bad.read_bytes()[:-4])
    shutil.copy(REAL_DVS / "tonic_sample_aedat_header.aedat", folder / "cat" / "cifar10_cat_0.aedat")
    task = get_task("cifar10-dvs")
    with pytest.raises(CorruptDataError, match=r"cifar10_cat_0\.aedat: contains no events"):
        task.build_dataset("train", data=tmp_path, time_steps=4)
    train = task.build_dataset("train", data=tmp_path, time_steps=4, skip_corrupt=True)
    assert train.skipped == 2 and len(train) == 28
    assert {entry["source"] for entry in train.skipped_files} == {"cat_cifar10_cat_0", "dog_cifar10_dog_1"}


@needs_real_dvs
def test_cifar10_dvs_tonic_layout_reads_aedat4_and_rejects_a_non_dvs128_camera(tmp_path):
    folder = tmp_path / "cifar10-dvs" / "CIFAR10DVS"
    for cls in CIFAR10_DVS_CLASSES:  # the real AEDAT 4.0 sample comes from a 320x240 DAVIS
        (folder / cls).mkdir(parents=True)
        shutil.copy(REAL_DVS / "tonic_sample.aedat4", folder / cls / f"{cls}_0.aedat4")
    task = get_task("cifar10-dvs")
    assert task.is_available(tmp_path)
    with pytest.raises(CorruptDataError, match=r"airplane_0\.aedat4: events do not fit a 128x128 two-polarity sensor: x in \[0, 319\]"):
        task.build_dataset("train", data=tmp_path, time_steps=4)
    with pytest.raises(DataNotFoundError, match=r"the split is empty: 10 source file\(s\) gave no samples \(10 skipped"):
        task.build_dataset("train", data=tmp_path, time_steps=4, skip_corrupt=True)


def test_cifar10_dvs_missing_data_names_layout_and_source(tmp_path):
    (tmp_path / "cifar10-dvs").mkdir()
    (tmp_path / "cifar10-dvs" / "airplane.zip").write_bytes(b"PK")
    with pytest.raises(DataNotFoundError) as caught:
        get_task("cifar10-dvs").build_dataset("eval", data=tmp_path)
    message = str(caught.value)
    assert "'cifar10-dvs'" in message and "airplane/cifar10_airplane_0.aedat" in message
    assert "figshare.com" in message and "found airplane.zip: extract them" in message


@needs_real_dvs
def test_cifar10_dvs_empty_eval_split(tmp_path):
    make_cifar10_dvs_release(tmp_path / "cifar10-dvs", per_class=1, events=20)
    with pytest.raises(DataNotFoundError, match="the eval split is empty"):
        get_task("cifar10-dvs").build_dataset("eval", data=tmp_path, time_steps=4)


def test_task_configs_follow_the_paper():
    gesture, cifar = get_task("dvs128-gesture"), get_task("cifar10-dvs")
    assert gesture.sample_shape() == (16, 2, 128, 128) and gesture.num_classes == 11
    assert cifar.sample_shape(10) == (10, 2, 128, 128) and cifar.num_classes == 10
    assert gesture.recipe.model == cifar.recipe.model == "spikformer-2-256"
    assert cifar.model_kwargs()["attn_scale"] == 0.25 and cifar.model_kwargs()["stem"] == "dvs"
    assert gesture.model_kwargs()["attn_scale"] == 0.25  # the official DVS model's, not the name's
    assert (cifar.recipe.lr, cifar.recipe.weight_decay, cifar.recipe.batch_size, cifar.recipe.epochs) == (
        1e-3, 0.06, 16, 106)


# -- augmentation ------------------------------------------------------------------------------
def test_augment_ops_move_events_consistently_over_time():
    frames = torch.zeros(3, 2, 128, 128)
    frames[:, 1, 40, 50] = torch.tensor([1.0, 2.0, 3.0])
    shifted = apply_op(frames, "translate_x", 4.0)
    assert shifted[:, 1, 40, 54].tolist() == [1.0, 2.0, 3.0] and shifted.sum() == 6
    assert torch.equal(apply_op(frames, "identity"), frames)
    erased = apply_op(torch.ones(2, 2, 128, 128), "cutout", generator=torch.Generator().manual_seed(0))
    assert torch.equal(erased, erased[:1, :1].expand_as(erased))  # the same square in every frame and channel
    out = augment_event_frames(frames, torch.Generator().manual_seed(1))
    assert out.shape == frames.shape and out.dtype == torch.float32


DRAWS = 2000  # with a fixed seed; a proportion's standard error is then at most 0.011


def test_augmentation_flips_half_the_samples(one_thread):  # thousands of ops on tiny tensors
    """A ramp rising left to right still rises after any of the ops (shear, shift, rotation up to 30
    degrees, cutout), and falls only when flipped: the flip rate must be 0.5 +- 0.035 (3 s.e.)."""
    generator = torch.Generator().manual_seed(0)
    ramp = torch.arange(1.0, 33.0).expand(1, 1, 32, 32).contiguous()
    flipped = 0
    for _ in range(DRAWS):
        out = augment_event_frames(ramp, generator)
        inside = (out[..., 1:] > 0) & (out[..., :-1] > 0)  # neighbours that are both image, not fill
        slope = ((out[..., 1:] - out[..., :-1]) * inside).sum().item()
        assert slope != 0
        flipped += slope < 0
    assert abs(flipped / DRAWS - 0.5) <= 0.035, f"flip rate {flipped / DRAWS}"


def test_cutout_erases_one_square_with_area_uniform_over_its_range(one_thread):
    """Each cutout is one square of zeros inside the frame whose area fraction is drawn uniformly
    from the recipe's range, 0.1%-11% of the image (Spikformer's CIFAR10-DVS augmentation), then
    rounded to a whole side: the deciles of the areas must be
    those of the uniform within 0.005 (side rounding moves an area by up to 0.0026, sampling ~0.001),
    and the draws must reach both ends of the range."""
    generator = torch.Generator().manual_seed(0)
    ones = torch.ones(1, 1, 128, 128)
    areas = []
    for _ in range(DRAWS):
        erased = apply_op(ones, "cutout", generator=generator)[0, 0] == 0
        rows, cols = erased.any(1).nonzero(), erased.any(0).nonzero()
        side = (rows.max() - rows.min() + 1).item()
        assert side == (cols.max() - cols.min() + 1).item() and erased.sum().item() == side * side
        areas.append(side * side / ones.numel())
    low, high = 0.001, 0.11
    deciles = np.quantile(areas, np.arange(1, 10) / 10)
    np.testing.assert_allclose(deciles, low + (high - low) * np.arange(1, 10) / 10, rtol=0, atol=0.005)
    assert min(areas) <= low + 0.002 and max(areas) >= high - 0.005


def test_an_event_task_without_data_downloads_when_asked_and_names_a_failed_download(tmp_path):
    """The EventTask contract a third event-camera task relies on: missing data without
    --download names the folder; a download that fails names the task, folder and cause; one
    that succeeds is followed by the normal build."""
    from tasks.events.task import EventTask

    gesture = get_task("dvs128-gesture")

    class FlakyCamera(EventTask):
        config = gesture.config
        calls = 0

        def find_layout(self, data_dir):
            return gesture.find_layout(data_dir)

        def source_items(self, layout, folder, split):
            return gesture.source_items(layout, folder, split)

        def fetch(self, data_dir):
            FlakyCamera.calls += 1
            if FlakyCamera.calls == 1:
                raise OSError("connection reset by peer")
            make_gesture_release(data_dir, TRAIN_TRIALS, TEST_TRIALS)

    task = FlakyCamera()
    with pytest.raises(DataNotFoundError, match="dvs128-gesture") as missing:
        task.build_dataset("train", data=tmp_path, time_steps=4)
    assert str(tmp_path) in str(missing.value) and FlakyCamera.calls == 0
    with pytest.raises(DataNotFoundError, match="download into .* failed: connection reset by peer"):
        task.build_dataset("train", data=tmp_path, time_steps=4, download=True)
    train = task.build_dataset("train", data=tmp_path, time_steps=4, download=True)
    assert FlakyCamera.calls == 2 and len(train) == 9
