"""Event streams and their integration into T frames, shared by the event-camera tasks.

An event stream is a numpy structured array of `EVENT_DTYPE`: `t` (microseconds), `x` (pixel
column), `y` (pixel row) and `p` (polarity, 0 = OFF, 1 = ON).

Frames follow the pipeline the Spikformer DVS results were trained with (spikingjelly's
`integrate_events_by_fixed_frames_number`, `split_by="number"`): the stream, in file order, is cut
into T slices of `N // T` events each, the last slice also taking the `N % T` remainder; each slice
is integrated into a `[2, H, W]` count image, channel 0 counting OFF events and channel 1 ON events
at `[y, x]`. tonic's `ToFrame(n_event_bins=T)` cuts the same slices but drops the remainder, so the
two agree exactly whenever `N % T == 0`. `split_by="time"` instead cuts `[t_min, t_max]` into T
equal durations and keeps every event.
"""

from __future__ import annotations

import numpy as np

from suite.errors import CorruptDataError

EVENT_DTYPE = np.dtype([("t", "<i8"), ("x", "<i2"), ("y", "<i2"), ("p", "u1")])
SPLIT_MODES = ("number", "time")
DVS128_SENSOR = (128, 128)  # (H, W)


def make_events(t, x, y, p) -> np.ndarray:
    """Build an `EVENT_DTYPE` array from four equally long 1-D arrays."""
    t, x, y, p = (np.asarray(a) for a in (t, x, y, p))
    if not (t.shape == x.shape == y.shape == p.shape) or t.ndim != 1:
        raise ValueError(f"t, x, y, p must be 1-D and equally long, got {t.shape} {x.shape} {y.shape} {p.shape}")
    events = np.empty(t.shape[0], dtype=EVENT_DTYPE)
    events["t"], events["x"], events["y"], events["p"] = t, x, y, p
    return events


def check_sensor_range(events: np.ndarray, sensor_size: tuple[int, int], origin: str) -> None:
    """Raise CorruptDataError naming `origin` if an event lies outside an `(H, W)` sensor."""
    if events.size == 0:
        return
    height, width = sensor_size
    x, y, p = events["x"], events["y"], events["p"]
    problems = []
    if x.min() < 0 or x.max() >= width:
        problems.append(f"x in [{x.min()}, {x.max()}] but the sensor is {width} wide")
    if y.min() < 0 or y.max() >= height:
        problems.append(f"y in [{y.min()}, {y.max()}] but the sensor is {height} high")
    if p.max() > 1:
        problems.append(f"polarity values up to {p.max()}, expected 0 or 1")
    if problems:
        raise CorruptDataError(
            f"{origin}: events do not fit a {height}x{width} two-polarity sensor: "
            + "; ".join(problems)
            + " (a recording from another camera, or a misread file)"
        )


def _slice_bounds_by_number(n_events: int, time_steps: int) -> np.ndarray:
    """Start offsets of the T equal-count slices plus the end (`N`): length T + 1."""
    per_slice = n_events // time_steps
    bounds = np.arange(time_steps + 1) * per_slice
    bounds[-1] = n_events  # the last slice takes the remainder, as spikingjelly does
    return bounds


def events_to_frames(
    events: np.ndarray,
    time_steps: int,
    sensor_size: tuple[int, int] = DVS128_SENSOR,
    split_by: str = "number",
) -> np.ndarray:
    """Integrate an event stream into `[T, 2, H, W]` float32 event counts (see module docstring).

    Coordinates must already be inside the sensor (`check_sensor_range`): out-of-range events would
    otherwise land in a neighbouring pixel or frame.
    """
    if time_steps < 1:
        raise ValueError(f"time_steps must be >= 1, got {time_steps}")
    if split_by not in SPLIT_MODES:
        raise ValueError(f"split_by {split_by!r} is not one of {SPLIT_MODES}")
    height, width = sensor_size
    plane = 2 * height * width
    frames = np.zeros((time_steps, 2, height, width), dtype=np.float32)
    n_events = events.size
    if n_events == 0:
        return frames
    # One flat index per event into a [2, H, W] plane; bincount then counts every event, where an
    # indexed `+=` would count a repeated pixel only once. int32 arithmetic with the casts done
    # inside the ufuncs halves the time of this step, the costliest one (fields are strided views).
    pixel = np.multiply(events["p"], height * width, dtype=np.int32)
    pixel += np.multiply(events["y"], width, dtype=np.int32)
    pixel += events["x"]
    if split_by == "number":
        bounds = _slice_bounds_by_number(n_events, time_steps)
        flat_frames = frames.reshape(time_steps, plane)
        for step in range(time_steps):
            lo, hi = bounds[step], bounds[step + 1]
            if hi > lo:
                flat_frames[step] = np.bincount(pixel[lo:hi], minlength=plane)
        return frames
    t = events["t"]
    t_min, t_max = int(t.min()), int(t.max())
    # Equal durations over [t_min, t_max]; the +1 keeps the last event inside slice T - 1.
    step_of_event = (t - t_min) * time_steps // (t_max - t_min + 1)  # int64: no overflow for large T
    counts = np.bincount(step_of_event * plane + pixel, minlength=time_steps * plane)
    frames[:] = counts.reshape(frames.shape)
    return frames
