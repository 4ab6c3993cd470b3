"""Event-to-frame speed: tasks.events.events_to_frames against tonic's ToFrame on the same events.

    python benchmarks/event_frames.py [--events 1000000] [--time-steps 16] [--repeats 5]

Both integrate one gesture-like stream (a blob circling the 128x128 sensor plus uniform noise, time
sorted) into T equal-count frames; with N divisible by T they are configured identically, and the
script checks the frames are equal before timing. spikingjelly's integration, which Spikformer's
DVS pipeline used, runs as a second peer. Prints events/s (best of the repeats) and our speed-up
ratio over each peer; exits 1 if the frames differ or the ratio over tonic is below --min-ratio.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tasks.events.stream import events_to_frames, make_events  # noqa: E402


def gesture_like_stream(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.sort(rng.integers(0, 6_000_000, n))
    phase = t / 6_000_000 * 4 * np.pi
    blob = rng.random(n) < 0.85
    x = np.where(blob, 64 + 35 * np.cos(phase) + rng.normal(0, 5, n), rng.integers(0, 128, n))
    y = np.where(blob, 64 + 35 * np.sin(phase) + rng.normal(0, 5, n), rng.integers(0, 128, n))
    return make_events(t=t, x=np.clip(x, 0, 127), y=np.clip(y, 0, 127), p=rng.integers(0, 2, n))


def best_and_median(fn, repeats: int) -> tuple[float, float]:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times), statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--time-steps", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--min-ratio", type=float, default=None, help="exit 1 if slower than tonic by this ratio")
    args = parser.parse_args(argv)
    if args.events % args.time_steps:
        parser.error("--events must be divisible by --time-steps (tonic drops the remainder, we keep it)")

    import tonic
    from spikingjelly.datasets.utils import integrate_events_by_fixed_frames_number

    events = gesture_like_stream(args.events)
    tonic_to_frame = tonic.transforms.ToFrame(sensor_size=(128, 128, 2), n_event_bins=args.time_steps)
    as_dict = {k: events[k].astype(np.int64) for k in ("t", "x", "y", "p")}
    peers = {
        "ours (tasks.events)": lambda: events_to_frames(events, args.time_steps),
        "tonic ToFrame": lambda: tonic_to_frame(events),
        "spikingjelly": lambda: integrate_events_by_fixed_frames_number(as_dict, "number", args.time_steps, 128, 128),
    }

    ours = peers["ours (tasks.events)"]()
    identical = {name: bool(np.array_equal(ours, fn())) for name, fn in list(peers.items())[1:]}
    print(f"{args.events:,} events -> {args.time_steps} frames of 2x128x128, best/median of {args.repeats}")
    for name, same in identical.items():
        print(f"frames identical to {name}: {'yes' if same else 'NO'}")

    timings = {name: best_and_median(fn, args.repeats) for name, fn in peers.items()}
    ours_best = timings["ours (tasks.events)"][0]
    print(f"{'implementation':<22} {'best s':>8} {'median s':>9} {'Mevents/s':>10} {'ours x faster':>14}")
    for name, (best, median) in timings.items():
        print(f"{name:<22} {best:8.4f} {median:9.4f} {args.events / best / 1e6:10.1f} {best / ours_best:14.2f}")

    ratio = timings["tonic ToFrame"][0] / ours_best
    if not all(identical.values()):
        print("FAIL: frames differ", file=sys.stderr)
        return 1
    if args.min_ratio is not None and ratio < args.min_ratio:
        print(f"FAIL: ours is {ratio:.2f}x tonic, below --min-ratio {args.min_ratio}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
