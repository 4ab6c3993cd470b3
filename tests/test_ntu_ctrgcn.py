"""The ctrgcn NTU preprocessing (tasks/ntu/ctrgcn.py) on the real .skeleton sample files: denoising,
centring, the crop-resize of training and evaluation, its cache, the task option and a real run."""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from suite.engine.config import resolve_settings
from suite.errors import CorruptDataError, UnknownNameError, UsageError
from suite.task_registry import get_task
from tasks.ntu.ctrgcn import (
    EVAL_CROP,
    MAX_FRAMES,
    MIN_CROP,
    ROTATION,
    crop_bounds,
    ctrgcn_sequence,
    fit_capacity,
    resize_frames,
    rotation_matrix,
)
from tasks.ntu.preprocess import SPINE_MID
from tasks.ntu.skeleton import parse_skeleton_bytes, read_skeleton
from tasks.ntu.task import NTU60
from tests.helpers.ntu_files import BODY_ID_BASE, NTU_SAMPLES, format_skeleton
from tests.helpers.real_samples import needs_real_samples

needs_samples = needs_real_samples("ntu")
TWO_ACTORS = "S001C003P008R002A058"  # 70 frames, both bodies in every frame
ACTOR_734, ACTOR_738 = 72057594037944734, 72057594037944738  # 738 is listed first in every frame
# name -> frames with a body (the file's frame count minus leading empty frames)
REAL_LENGTHS = {"S001C001P001R001A001": 103, "S003C001P015R001A034": 71, TWO_ACTORS: 70, "S001C003P006R002A008": 24}


def _real(name: str):
    return read_skeleton(NTU_SAMPLES / f"{name}.skeleton")


def _body(skeleton, body_id: int) -> np.ndarray:
    """[frames, 25, 3] of one body ID, straight from the parsed file."""
    return skeleton.joints[skeleton.body_ids == body_id, :, :3].astype(np.float64)


def _pooled_variance(xyz: np.ndarray) -> float:
    return float(np.var(xyz.reshape(-1, 3), axis=0).sum())


# -- once per file: denoise and centre ----------------------------------------------------------------
@needs_samples
def test_two_actor_file_keeps_both_bodies_the_more_moving_one_first():
    skeleton = _real(TWO_ACTORS)
    a734, a738 = _body(skeleton, ACTOR_734), _body(skeleton, ACTOR_738)
    assert _pooled_variance(a734) > _pooled_variance(a738)  # so 734 is actor 1 although listed second
    sequence = ctrgcn_sequence(skeleton)
    assert sequence.shape == (70, 2, 25, 3) and sequence.dtype == np.float32
    origin = a734[0, SPINE_MID]
    np.testing.assert_allclose(sequence[:, 0], a734 - origin, atol=1e-6)
    np.testing.assert_allclose(sequence[:, 1], a738 - origin, atol=1e-6)
    assert (sequence[0, 0, SPINE_MID] == 0).all()


def _two_actors_plus(noise: list[tuple[int, np.ndarray, range]]) -> bytes:
    """The real two-actor file re-written, plus noise bodies (id, joints [frames, 25, 12], frames)."""
    skeleton = _real(TWO_ACTORS)
    frames = []
    for f in range(skeleton.num_frames):
        bodies = [(int(i), j) for i, j in zip(skeleton.body_ids[skeleton.frame_index == f],
                                              skeleton.joints[skeleton.frame_index == f])]
        frames.append([(body_id, joints[f]) for body_id, joints, span in noise if f in span] + bodies)
    return format_skeleton(frames)


@needs_samples
def test_denoising_removes_short_and_wide_bodies_added_to_a_real_file():
    skeleton = _real(TWO_ACTORS)
    joints = skeleton.joints[skeleton.body_ids == ACTOR_738]
    short = joints.copy()
    short[:, :, :3] *= 5  # moves wildly, but for 11 frames only: a spurious detection
    wide = joints.copy()
    wide[:, :, [0, 1]] = 3 * joints[:, :, [1, 0]]  # x and y swapped: lying, and the most moving body
    assert _pooled_variance(wide[:, :, :3]) > _pooled_variance(_body(skeleton, ACTOR_734))
    clean = ctrgcn_sequence(parse_skeleton_bytes(_two_actors_plus([])))
    np.testing.assert_allclose(clean, ctrgcn_sequence(skeleton), atol=2e-6)  # 7-digit text round trip
    noisy = _two_actors_plus([(BODY_ID_BASE + 1, short, range(20, 31)), (BODY_ID_BASE + 2, wide, range(70))])
    np.testing.assert_array_equal(ctrgcn_sequence(parse_skeleton_bytes(noisy)), clean)
    # the spread rule never removes the last body left after the length rule
    alone = format_skeleton([[(BODY_ID_BASE + 2, wide[f])] + ([(BODY_ID_BASE + 1, short[f])] if f < 11 else [])
                             for f in range(70)])
    kept = ctrgcn_sequence(parse_skeleton_bytes(alone))
    np.testing.assert_allclose(kept[:, 0], wide[:, :, :3] - wide[0, SPINE_MID, :3], atol=1e-5)
    assert not kept[:, 1].any()


@needs_samples
def test_a_second_id_of_the_same_person_joins_actor_one():
    """The first actor's track split in two IDs (frames 0-39, 40-69): both halves fill slot 0."""
    skeleton = _real(TWO_ACTORS)
    a734, a738 = skeleton.joints[skeleton.body_ids == ACTOR_734], skeleton.joints[skeleton.body_ids == ACTOR_738]
    frames = [[(ACTOR_734 if f < 40 else BODY_ID_BASE + 5, a734[f]), (ACTOR_738, a738[f])] for f in range(70)]
    split = ctrgcn_sequence(parse_skeleton_bytes(format_skeleton(frames)))
    whole = ctrgcn_sequence(parse_skeleton_bytes(format_skeleton([[(ACTOR_734, a734[f]), (ACTOR_738, a738[f])]
                                                                  for f in range(70)])))
    np.testing.assert_array_equal(split, whole)


@needs_samples
@pytest.mark.parametrize("name", ["S001C001P001R001A001", "S003C001P015R001A034"])
def test_single_body_file_is_centred_on_its_first_spine_middle(name):
    skeleton = _real(name)
    body = _body(skeleton, skeleton.body_ids[0])
    sequence = ctrgcn_sequence(skeleton)
    assert sequence.shape == (REAL_LENGTHS[name], 2, 25, 3)
    assert (sequence[0, 0, SPINE_MID] == 0).all() and not sequence[:, 1].any()
    np.testing.assert_allclose(sequence[:, 0], body - body[0, SPINE_MID], atol=1e-6)


@needs_samples
def test_leading_empty_frames_are_dropped_and_bodiless_files_rejected():
    skeleton = _real("S001C003P006R002A008")  # 55 empty frames, then 24 with the actor
    sequence = ctrgcn_sequence(skeleton)
    assert sequence.shape[0] == 24 and (sequence[0, 0, SPINE_MID] == 0).all()
    assert (np.abs(sequence[:, 0]).sum(axis=(1, 2)) > 0).all()
    with pytest.raises(CorruptDataError, match="no body in any of its 92 frames"):
        ctrgcn_sequence(_real("S001C003P005R002A004"))


@needs_samples
def test_capacity_pads_and_resamples_longer_sequences():
    sequence = ctrgcn_sequence(_real("S001C001P001R001A001"))
    padded, length = fit_capacity(sequence)
    assert padded.shape == (MAX_FRAMES, 2, 25, 3) and length == 103
    assert np.array_equal(padded[:103], sequence) and not padded[103:].any()
    squeezed, length = fit_capacity(sequence, capacity=50)
    assert squeezed.shape[0] == length == 50
    np.testing.assert_allclose(squeezed, resize_frames(sequence, 50))


# -- per read: crop and resize --------------------------------------------------------------------
@pytest.mark.parametrize("frames", [103, 300, 70])
def test_training_crop_stays_within_its_interval(frames):
    generator = torch.Generator().manual_seed(0)
    draws = np.array([crop_bounds(frames, train=True, generator=generator) for _ in range(2000)])
    starts, lengths = draws[:, 0], draws[:, 1]
    low = max(math.floor(frames * 0.5), MIN_CROP)
    assert lengths.min() >= low and lengths.max() <= frames and (starts >= 0).all()
    assert (starts + lengths <= frames).all()
    if low < frames:  # the interval is used, not one corner of it (2000 draws, uniform share)
        assert lengths.min() <= low + 0.05 * frames and lengths.max() >= 0.95 * frames
        assert starts.max() >= 0.4 * (frames - low)
    again = torch.Generator().manual_seed(0)
    assert [list(crop_bounds(frames, train=True, generator=again)) for _ in range(5)] == draws[:5].tolist()


def test_short_sequence_is_taken_whole_and_eval_crop_is_the_centre_95_percent():
    generator = torch.Generator().manual_seed(1)
    assert {crop_bounds(24, train=True, generator=generator) for _ in range(50)} == {(0, 24)}
    for frames in (24, 70, 103, 300):
        start, length = crop_bounds(frames, train=False)
        cut = math.floor((1 - EVAL_CROP) * frames / 2)
        assert (start, length) == (cut, frames - 2 * cut)
    assert crop_bounds(103, train=False) == (2, 99) and crop_bounds(300, train=False) == (7, 286)


@needs_samples
@pytest.mark.parametrize("length", [24, 64, 103, 300])
def test_resize_is_the_feeders_bilinear_interpolation_in_time(length):
    sequence = ctrgcn_sequence(_real("S001C001P001R001A001"))
    source = resize_frames(sequence, length)  # a real sequence at several lengths
    resized = resize_frames(source, 64)
    # the feeder's own formulation: [C*V*M, T] as a one-channel image, bilinear to [C*V*M, 64]
    image = torch.from_numpy(source).permute(3, 2, 1, 0).reshape(-1, length)[None, None]
    expected = F.interpolate(image, size=(image.shape[2], 64), mode="bilinear", align_corners=False)[0, 0]
    np.testing.assert_allclose(resized, expected.reshape(3, 25, 2, 64).permute(3, 2, 1, 0).numpy(), atol=1e-6)
    # and by hand: output frame i samples the input at (i + 0.5) * T / 64 - 0.5, clamped
    position = np.clip((np.arange(64) + 0.5) * length / 64 - 0.5, 0, length - 1)
    by_hand = np.stack([np.interp(position, np.arange(length), s) for s in source.reshape(length, -1).T], axis=1)
    np.testing.assert_allclose(resized.reshape(64, -1), by_hand, atol=1e-5)


@needs_samples
def test_rotation_is_proper_and_keeps_absent_bodies_zero():
    quarter = rotation_matrix([0.0, 0.0, math.pi / 2])  # about z: x -> y
    np.testing.assert_allclose(quarter @ [1, 0, 0], [0, 1, 0], atol=1e-7)
    matrix = rotation_matrix([0.3, -0.2, 0.1])
    np.testing.assert_allclose(matrix @ matrix.T, np.eye(3), atol=1e-6)
    assert np.linalg.det(matrix) == pytest.approx(1, abs=1e-6)
    from tasks.ntu.ctrgcn import random_rotation

    clip = resize_frames(ctrgcn_sequence(_real("S001C001P001R001A001")), 64)
    torch.manual_seed(0)
    turned = random_rotation(clip)
    np.testing.assert_allclose(np.linalg.norm(turned, axis=-1), np.linalg.norm(clip, axis=-1), atol=1e-5)
    assert not turned[:, 1].any() and not np.allclose(turned, clip)
    # the angle between a joint and its image is at most the three +-0.3 rad turns combined
    cos = (turned * clip).sum(-1) / np.maximum(np.linalg.norm(clip, axis=-1) ** 2, 1e-12)
    assert np.arccos(np.clip(cos[:, 0][np.linalg.norm(clip[:, 0], axis=-1) > 0.1], -1, 1)).max() <= 3 * ROTATION


# -- the cache and the task option ----------------------------------------------------------------
@pytest.fixture(scope="module")
def real_root(tmp_path_factory):
    """A data root holding the real sample files: 3 with bodies and 2 on the official missing list
    (one without bodies, one with leading empty frames); xsub: 3 train, 0 eval; xview: 1 train, 2 eval."""
    root = tmp_path_factory.mktemp("ntu-real")
    folder = root / "ntu60" / "nturgb+d_skeletons"
    folder.mkdir(parents=True)
    for path in NTU_SAMPLES.glob("*.skeleton"):
        shutil.copy(path, folder / path.name)
    return root


@needs_samples
def test_the_two_preprocessings_keep_separate_caches(real_root):
    suite_set = NTU60().build_dataset("train", data=real_root, augment=False)
    ctrgcn_set = NTU60(preprocess="ctrgcn").build_dataset("train", data=real_root, augment=False)
    assert suite_set.names == ctrgcn_set.names == ["S001C001P001R001A001", TWO_ACTORS, "S003C001P015R001A034"]
    manifests = {}
    for file in (real_root / "ntu60" / "cache").glob("*/manifest.json"):
        manifest = json.loads(file.read_text())
        manifests[manifest["spec"]["preprocess"]] = manifest
    assert set(manifests) == {"suite", "ctrgcn"}
    assert manifests["suite"]["clips"]["shape"] == [3, 64, 2, 25, 3]
    assert manifests["ctrgcn"]["clips"]["shape"] == [3, MAX_FRAMES, 2, 25, 3]
    frames = {s["name"]: s["frames"] for s in manifests["ctrgcn"]["samples"]}
    assert frames == {name: REAL_LENGTHS[name] for name in suite_set.names}
    assert {s["frames"] for s in manifests["suite"]["samples"]} == {64}
    x_suite, x_ctrgcn = suite_set[1][0], ctrgcn_set[1][0]
    assert x_suite.shape == x_ctrgcn.shape == (4, 3, 16, 52) and not torch.equal(x_suite, x_ctrgcn)


@needs_samples
def test_ctrgcn_samples_are_the_crop_of_the_cached_sequence(real_root):
    task = get_task("ntu60")
    evaluation = task.build_dataset("eval", data=real_root, protocol="xview", preprocess="ctrgcn")
    assert evaluation.names == ["S001C001P001R001A001", "S003C001P015R001A034"] and evaluation.window == 64
    x, label = evaluation[0]
    assert label == 0 and torch.equal(x, evaluation[0][0])  # the centre crop: the same every read
    sequence = ctrgcn_sequence(_real("S001C001P001R001A001"))
    clip = resize_frames(sequence[2:101], 64)  # 103 frames: the centre 95% cuts int(2.575) = 2 at each end
    assert torch.equal(x, evaluation.encoder(clip, 4))
    train = task.build_dataset("train", data=real_root, preprocess="ctrgcn", time_steps=2)
    torch.manual_seed(0)
    first = [train[i][0] for i in range(len(train))]
    second = [train[i][0] for i in range(len(train))]
    assert all(x.shape == (2, 3, 16, 52) for x in first)
    assert not all(torch.equal(a, b) for a, b in zip(first, second))  # a fresh crop and rotation per read
    assert all(x[:, :, :, 26:].abs().sum() == 0 for x in (first[0], first[2]))  # one-actor samples


def test_unknown_preprocessing_is_named():
    with pytest.raises(UnknownNameError, match="task 'ntu60' has no preprocessing 'agcn'; valid: suite, ctrgcn"):
        NTU60(preprocess="agcn")
    with pytest.raises(UnknownNameError, match="'cifar10' has no preprocessing 'ctrgcn'; it offers no choice"):
        get_task("cifar10").build_dataset("train", data="synthetic", preprocess="ctrgcn")


def test_run_settings_carry_the_preprocessing():
    assert resolve_settings("ntu60", {"data": "synthetic"}).preprocess == "suite"
    assert resolve_settings("ntu120", {"data": "synthetic", "preprocess": "ctrgcn"}).preprocess == "ctrgcn"
    assert resolve_settings("cifar10", {"data": "synthetic"}).preprocess is None
    # synthetic clips are generated at the model's input shape, which both preprocessings share
    synthetic = get_task("ntu60").build_dataset("train", data="synthetic", preprocess="ctrgcn", synthetic_size=2)
    assert synthetic[0][0].shape == (4, 3, 16, 52)
    with pytest.raises(UsageError, match="^--preprocess: task 'ntu60' has no preprocessing 'x'; valid: suite, ctrgcn$"):
        resolve_settings("ntu60", {"data": "synthetic", "preprocess": "x"})
    with pytest.raises(UsageError, match="^--preprocess: task 'cifar10' has no preprocessing 'ctrgcn'"):
        resolve_settings("cifar10", {"data": "synthetic", "preprocess": "ctrgcn"})


@pytest.mark.slow
@needs_samples
def test_a_run_on_the_real_samples_trains_with_ctrgcn(real_root, tmp_path, monkeypatch, capsys):
    """`suite run --preprocess ctrgcn` end to end: embedded Ray, the real files, an MLflow run."""
    from suite import schema, tracking
    from suite.cli import main
    from suite.engine.ray_session import start_ray

    monkeypatch.setenv("SUITE_HOME", str(tmp_path))
    start_ray(None)
    try:
        code = main(["run", "--task", "ntu60", "--data-root", str(real_root), "--preprocess", "ctrgcn",
                     "--protocol", "xview", "--model", "spikformer-1-32", "--time-steps", "2", "--batch-size", "1",
                     "--epochs", "1",
                     "--warmup-epochs", "0", "--amp", "off"])
    finally:
        import ray

        ray.shutdown()
    assert code == 0
    client = tracking.client(tracking.default_tracking_uri())
    experiment = client.get_experiment_by_name(schema.DEFAULT_EXPERIMENT)
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.status == "FINISHED" and run.data.params["preprocess"] == "ctrgcn"
    assert run.data.metrics[schema.M_TOP1] in (0.0, 50.0, 100.0)  # two eval samples
    assert math.isfinite(run.data.metrics[schema.M_LOSS])
