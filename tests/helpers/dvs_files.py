"""Writers of small but format-exact DVS128 Gesture and CIFAR10-DVS files for the event-task tests.

AEDAT 3.1 files get a cAER-style header and polarity packets built here (plus a special-event packet
and invalid events the reader must ignore); AER-DAT 2.0 files start with the real jAER header from
shared/data/real-samples/dvs and continue with big-endian events written here.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tests.helpers.real_samples import REAL_SAMPLES
REAL_DVS = REAL_SAMPLES / "dvs"
CIFAR10_DVS_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")

AEDAT31_HEADER = (
    b"#!AER-DAT3.1\r\n"
    b"#Format: RAW\r\n"
    b"#Source 1: DVS128\r\n"
    b"#Start-Time: 2017-02-08 15:47:51 (TZ-0500)\r\n"
    b"#!END-HEADER\r\n"
)
PACKET_HEADER = struct.Struct("<hhiiiiii")


def polarity_word(x, y, p, valid=True) -> np.ndarray:
    """The u32 data word of AEDAT 3.1 polarity events: valid bit 0, polarity bit 1, y bits 2+, x bits 17+."""
    x, y, p = (np.asarray(a, dtype=np.uint32) for a in (x, y, p))
    return (x << 17) | (y << 2) | (p << 1) | np.asarray(valid, dtype=np.uint32)


def polarity_packet(x, y, p, ts, *, overflow: int = 0, valid=True) -> bytes:
    words = polarity_word(x, y, p, valid)
    body = np.empty(words.size, dtype=[("data", "<u4"), ("ts", "<i4")])
    body["data"], body["ts"] = words, ts
    n_valid = int(np.broadcast_to(np.asarray(valid, dtype=bool), words.shape).sum())
    header = PACKET_HEADER.pack(1, 1, 8, 4, overflow, words.size, words.size, n_valid)
    return header + body.tobytes()


def special_packet(n: int = 1, ts: int = 0) -> bytes:
    """A type-0 (special event) packet, e.g. the timestamp reset cAER writes first."""
    body = np.zeros(n, dtype=[("data", "<u4"), ("ts", "<i4")])
    body["data"], body["ts"] = (1 << 1) | 1, ts
    return PACKET_HEADER.pack(0, 1, 8, 4, 0, n, n, n) + body.tobytes()


def write_aedat31(path: Path, packets: list[bytes], header: bytes = AEDAT31_HEADER) -> Path:
    path.write_bytes(header + b"".join(packets))
    return path


def write_labels_csv(path: Path, segments: list[tuple[int, int, int]]) -> Path:
    lines = ["class,startTime_usec,endTime_usec"] + [f"{c},{s},{e}" for c, s, e in segments]
    path.write_text("\n".join(lines) + "\n")
    return path


def random_events(rng: np.random.Generator, n: int, t_start: int, t_end: int) -> dict[str, np.ndarray]:
    """n events with sorted timestamps in [t_start, t_end) anywhere on a 128x128 sensor."""
    return {
        "x": rng.integers(0, 128, n), "y": rng.integers(0, 128, n), "p": rng.integers(0, 2, n),
        "t": np.sort(rng.integers(t_start, t_end, n)),
    }


@dataclass
class GestureTrial:
    name: str
    segments: list[tuple[int, int, int]]  # (class 1-11, start_us, end_us)
    events_per_segment: list[int] = field(default_factory=list)


def write_gesture_trial(folder: Path, trial: GestureTrial, rng: np.random.Generator, per_segment: int = 300):
    """One recording: events inside each labelled segment plus events between them (not in any sample)."""
    x, y, p, t = [], [], [], []
    cursor = 0
    for _cls, start, end in trial.segments:
        for lo, hi, n in ((cursor, start, 50), (start, end, per_segment)):
            if hi > lo:
                ev = random_events(rng, n, lo, hi)
                x.append(ev["x"]), y.append(ev["y"]), p.append(ev["p"]), t.append(ev["t"])
        trial.events_per_segment.append(per_segment)
        cursor = end
    x, y, p, t = (np.concatenate(a) for a in (x, y, p, t))
    half = t.size // 2  # two polarity packets, as cAER splits a stream
    packets = [special_packet(), polarity_packet(x[:half], y[:half], p[:half], t[:half]),
               polarity_packet(x[half:], y[half:], p[half:], t[half:])]
    write_aedat31(folder / f"{trial.name}.aedat", packets)
    write_labels_csv(folder / f"{trial.name}_labels.csv", trial.segments)
    return {"x": x, "y": y, "p": p, "t": t}


def make_gesture_release(folder: Path, train: list[str], test: list[str], seed: int = 0) -> dict[str, GestureTrial]:
    """A miniature original release: trial lists, AEDAT 3.1 recordings and labels CSVs."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    trials = {}
    for i, name in enumerate(train + test):
        classes = [(i * 3 + k) % 11 + 1 for k in range(3)]
        segments = [(c, 1_000_000 * (k + 1), 1_000_000 * (k + 1) + 600_000) for k, c in enumerate(classes)]
        trials[name] = GestureTrial(name, segments)
        write_gesture_trial(folder, trials[name], rng)
    (folder / "trials_to_train.txt").write_text("".join(f"{n}.aedat\n" for n in train))
    (folder / "trials_to_test.txt").write_text("".join(f"{n}.aedat\r\n" for n in test) + "\n")
    return trials


def aerdat2_address(column, row, bit0) -> np.ndarray:
    """jAER DVS128 address: polarity bit 0, column bits 1-7, row bits 8-14."""
    column, row, bit0 = (np.asarray(a, dtype=np.uint32) for a in (column, row, bit0))
    return (row << 8) | (column << 1) | bit0


def write_aerdat2(path: Path, column, row, bit0, t) -> Path:
    """Real jAER header + big-endian (address, timestamp) pairs."""
    pairs = np.empty((len(t), 2), dtype=">u4")
    pairs[:, 0], pairs[:, 1] = aerdat2_address(column, row, bit0), t
    path.write_bytes((REAL_DVS / "tonic_sample_aedat_header.aedat").read_bytes() + pairs.tobytes())
    return path


def make_cifar10_dvs_release(folder: Path, per_class: int, events: int = 200, seed: int = 0) -> dict[str, int]:
    """Class folders of AER-DAT 2.0 recordings named like the original (cifar10_<class>_<i>.aedat)."""
    rng = np.random.default_rng(seed)
    counts = {}
    for cls in CIFAR10_DVS_CLASSES:
        (folder / cls).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            n = events + i
            ev = random_events(rng, n, 0, 1_300_000)
            write_aerdat2(folder / cls / f"cifar10_{cls}_{i}.aedat", ev["x"], ev["y"], ev["p"], ev["t"])
            counts[f"{cls}/{i}"] = n
    return counts
