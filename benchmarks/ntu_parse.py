"""NTU .skeleton parsing speed: tasks.ntu.skeleton against a reference-style line parser.

    python benchmarks/ntu_parse.py [--files 200] [--repeats 5] [--workers 1 2] [--min-ratio 3]

The corpus is made of the real sample files in shared/data/real-samples/ntu/ (one or two bodies,
CRLF and LF, E-notation, bodiless frames), copied under distinct sample names into a temporary
folder, half of them with their line endings switched. Both parsers read every file from disk,
alternating file by file (best of the repeats per file, so a load spike on a shared machine hits
both sides alike); their outputs are compared first. The peer is written the way the NTU reference
scripts parse (read a line, split it, float() every value, Python lists) and lives only here.
Prints MB/s and files/s and the speed-up ratio; then the throughput of the whole per-file
preprocessing (parse, pick bodies, centre, resample) in one process and in a warm process pool, and
one cold cache build (worker start-up and cache writing included). Exits 1 if the outputs differ or
the parser's ratio is below --min-ratio.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import itertools
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tasks.ntu.cache import CacheSpec, SourceFile, _process_one, ensure_cache  # noqa: E402
from tasks.ntu.ctrgcn import MAX_FRAMES  # noqa: E402
from tasks.ntu.skeleton import read_skeleton  # noqa: E402
from tasks.ntu.splits import parse_sample_name  # noqa: E402
from tasks.preprocessing_cache import worker_context  # noqa: E402

REAL_SAMPLES = Path(__file__).resolve().parents[2] / "shared/data/real-samples/ntu"


def reference_parse(path: Path) -> dict:
    """The NTU reference style: one readline per value line, float() per value, nested lists."""
    with open(path) as handle:
        sequence = {"frames": []}
        for _ in range(int(handle.readline())):
            bodies = []
            for _ in range(int(handle.readline())):
                fields = handle.readline().split()
                body = {"id": int(fields[0]), "info": [float(v) for v in fields[1:]], "joints": []}
                for _ in range(int(handle.readline())):
                    body["joints"].append([float(v) for v in handle.readline().split()])
                bodies.append(body)
            sequence["frames"].append(bodies)
    return sequence


def make_corpus(folder: Path, count: int) -> list[Path]:
    originals = sorted(REAL_SAMPLES.glob("*.skeleton"))
    if not originals:
        raise SystemExit(f"no real NTU .skeleton samples in {REAL_SAMPLES}: it needs shared/ beside the repository")
    contents = [p.read_bytes() for p in originals]
    folder.mkdir(parents=True, exist_ok=True)
    names = (f"S{s:03d}C{c:03d}P{p:03d}R001A{a:03d}" for s, c, p, a in
             itertools.product(range(1, 18), range(1, 4), range(1, 41), range(1, 61)))
    paths = []
    for index, name in zip(range(count), names):
        data = contents[index % len(contents)]
        if index % 2:  # switch line endings: CRLF <-> LF
            data = data.replace(b"\r\n", b"\n") if b"\r\n" in data else data.replace(b"\n", b"\r\n")
        path = folder / f"{name}.skeleton"
        path.write_bytes(data)
        paths.append(path)
    return paths


def check_agreement(paths: list[Path]) -> None:
    for path in paths[: 2 * len(list(REAL_SAMPLES.glob("*.skeleton")))]:
        fast, reference = read_skeleton(path), reference_parse(path)
        ids = [body["id"] for frame in reference["frames"] for body in frame]
        joints = np.array([body["joints"] for frame in reference["frames"] for body in frame], dtype=np.float32)
        if fast.body_ids.tolist() != ids or not np.array_equal(fast.joints, joints.reshape(fast.joints.shape)):
            raise SystemExit(f"outputs differ on {path}")


def interleaved_best(reference, fast, paths: list[Path], repeats: int) -> tuple[float, float]:
    """Total over files of each parser's best time per file, the two parsers alternating on every
    file: on a shared machine a load spike then hits both sides instead of one whole pass."""
    totals = [0.0, 0.0]
    for path in paths:
        best = [float("inf"), float("inf")]
        for _ in range(repeats):
            for side, parse in enumerate((reference, fast)):
                start = time.perf_counter()
                parse(path)
                best[side] = min(best[side], time.perf_counter() - start)
        totals[0] += best[0]
        totals[1] += best[1]
    return totals[0], totals[1]


def best_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=200, help="corpus size (default 200 files, ~35 MB)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, os.cpu_count() or 1],
                        help="process counts for the preprocessing rows")
    parser.add_argument("--min-ratio", type=float, default=3.0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    with tempfile.TemporaryDirectory(prefix="ntu-parse-bench-") as tmp:
        paths = make_corpus(Path(tmp) / "skeletons", args.files)
        megabytes = sum(p.stat().st_size for p in paths) / 1e6
        read_skeleton(paths[0])  # load the compiled tokenizer before timing
        check_agreement(paths)

        rows = []
        reference, fast = interleaved_best(reference_parse, read_skeleton, paths, args.repeats)
        rows.append(("reference-style line parser", 1, reference, 1.0))
        rows.append(("tasks.ntu.skeleton (fast)", 1, fast, reference / fast))

        jobs = [(str(p), CacheSpec(frames=64, max_bodies=2)) for p in paths]
        serial = best_time(lambda: [_process_one(job) for job in jobs], args.repeats)
        rows.append(("parse + preprocess", 1, serial, None))
        ctrgcn = CacheSpec(frames=MAX_FRAMES, max_bodies=2, preprocess="ctrgcn")
        serial = best_time(lambda: [_process_one((path, ctrgcn)) for path, _ in jobs], args.repeats)
        rows.append(("parse + preprocess (ctrgcn)", 1, serial, None))
        context = worker_context()  # the start method every cache build uses
        for workers in sorted(set(args.workers) - {1}):
            with concurrent.futures.ProcessPoolExecutor(workers, mp_context=context) as pool:
                list(pool.map(_process_one, jobs[:workers]))  # start and warm every worker first
                chunk = max(1, len(jobs) // (workers * 8))
                pooled = best_time(lambda: list(pool.map(_process_one, jobs, chunksize=chunk)), args.repeats)
            rows.append(("parse + preprocess (warm pool)", workers, pooled, None))

        sources = [SourceFile(p.stem, p, p.name, p.stat().st_size, p.stat().st_mtime_ns,
                              parse_sample_name(p.stem).label) for p in paths]
        workers = max(args.workers)
        start = time.perf_counter()
        ensure_cache(sources, Path(tmp) / "cache", CacheSpec(frames=64, max_bodies=2), workers=workers)
        cold = time.perf_counter() - start
        rows.append(("cache build, cold (incl. start-up)", workers, cold, None))

    print(f"corpus: {len(paths)} files, {megabytes:.1f} MB (copies of {len(list(REAL_SAMPLES.glob('*.skeleton')))} "
          f"real NTU samples, CRLF and LF); best of {args.repeats}")
    print(f"{'what':36} {'procs':>5} {'seconds':>8} {'MB/s':>8} {'files/s':>8} {'vs reference':>13}")
    for what, procs, seconds, ratio in rows:
        versus = f"{ratio:>12.1f}x" if ratio is not None else f"{'-':>13}"  # only parsers compare
        print(f"{what:36} {procs:>5} {seconds:>8.2f} {megabytes / seconds:>8.1f} {len(paths) / seconds:>8.0f} {versus}")
    ratio = reference / fast
    if ratio < args.min_ratio:
        print(f"FAIL: the fast parser is {ratio:.1f}x the reference, below --min-ratio {args.min_ratio}")
        return 1
    print(f"OK: the fast parser is {ratio:.1f}x the reference-style parser (goal >= {args.min_ratio}x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
