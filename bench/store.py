"""Feature store benchmark: ingest throughput, and reader throughput against plain pyarrow.

    python bench/store.py --sizes 300,1200 --audio-dim 1024 --visual-dim 1408 --passes 3

Per size: a synthetic corpus (vavl.synthetic, float32 .npy, not timed), then the ingest (Ray
Data, float16 store, 128-row shards; utterances/s and input MB/s). Then, per size, two fresh
subprocesses read every split of the store `--passes` times, batch 32, into the same output: a
`vavl.batch.Batch` of normalised, padded float32 frames + masks (`vavl.store.collate`):
  - "store": FeatureStore.dataset(split) -> iter_batches (Ray Data: read tasks in Ray workers,
    blocks through the object store, collate in the iterator's prefetch threads). Ray start-up
    and one warm-up batch are timed apart ("start s"). The first pass builds the Datasets and
    pays Ray Data's per-execution start-up once per split; later passes iterate the same
    Datasets again, as later training epochs do ("steady": the median of passes 2..N).
  - "pyarrow": pq.ParquetFile(shard).iter_batches(32) -> collate, in one process, no Ray.
Memory is the reading process's, sampled every 20 ms: peak RSS (VmHWM), and the peaks of its
private anonymous memory (RssAnon: the reader's own arrays) and of shared memory (RssShmem: pages
of Ray's object store that this process has mapped, shared with the workers that wrote them).
Ray's read tasks run in worker processes whose memory is not included. Not a test: the numbers
vary with the machine and whatever else runs on it.

Reading the figures: training feels the reader's rate only in its first epoch, since later epochs
are served from memory (`vavl.store.cache`). The shared part of the reader's memory is Ray's
object-store pages it consumed, capped by `vavl.store.reader.READ_AHEAD_BYTES` plus the blocks in
use, so it reaches that cap only for splits larger than it; its private part stays flat with the
store's size.

Writes BENCHMARKS.md ("feature store (<audio dim>/<visual dim> dims)").
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from record import record, run_alone


def folder_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 1e6


def ingest_size(root: Path, size: int, audio_dim: int, visual_dim: int) -> dict:
    from vavl.store import ingest_corpus_folder
    from vavl.synthetic import write_corpus

    corpus = root / f"corpus-{size}"
    write_corpus(corpus, utterances=size, audio_dim=audio_dim, visual_dim=visual_dim, seed=size)
    input_mb = folder_mb(corpus / "audio") + folder_mb(corpus / "visual")
    started = time.perf_counter()
    report = ingest_corpus_folder(
        corpus,
        str(root / f"store-{size}"),
        shard_rows=128,
    )
    seconds = time.perf_counter() - started
    return dict(
        size=size,
        ingest_utt_s=size / seconds,
        ingest_mb_s=input_mb / seconds,
        input_mb=input_mb,
        store_mb=report.bytes / 1e6,
    )


class MemorySampler:
    """Peaks of this process's RSS parts (/proc/self/status, MB), sampled in a thread."""

    FIELDS = ("VmHWM", "RssAnon", "RssShmem")

    def __init__(self, every_s: float = 0.02) -> None:
        self.peaks = dict.fromkeys(self.FIELDS, 0.0)
        self._every = every_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> None:
        for line in Path("/proc/self/status").read_text().splitlines():
            name, _, value = line.partition(":")
            if name in self.peaks:
                self.peaks[name] = max(self.peaks[name], int(value.split()[0]) / 1024)

    def _run(self) -> None:
        while not self._stop.wait(self._every):
            self._sample()

    def __enter__(self) -> MemorySampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()


def one_pass(batches_of_split: dict, rows_seen: list[int]) -> float:
    """Seconds to consume every batch of every split; row and frame counts into `rows_seen`."""
    started = time.perf_counter()
    for batches in batches_of_split.values():
        for batch in batches():
            rows_seen[0] += len(batch)
            rows_seen[1] += int(batch.audio_mask.sum()) + int(batch.visual_mask.sum())
    return time.perf_counter() - started


def read_store(store_path: str, passes: int) -> dict:
    import ray

    from vavl.runtime import quiet_ray_data
    from vavl.store import FeatureStore, iter_batches

    started = time.perf_counter()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    quiet_ray_data()
    store = FeatureStore.open(store_path)
    spec = store.batch_spec()
    warm_up = iter_batches(store.dataset(store.splits()[-1]), spec, batch_size=1)
    next(warm_up)  # Ray's worker processes running, as a training job would have them
    warm_up.close()
    start_s = time.perf_counter() - started
    datasets: dict = {}

    def batches(split: str):  # the same Dataset object on every pass after the first
        if split not in datasets:
            datasets[split] = store.dataset(split)
        return iter_batches(datasets[split], spec, batch_size=32)

    splits = {s: (lambda s=s: batches(s)) for s in store.splits()}
    return dict(start_s=start_s, **timed_passes(splits, passes))


def read_pyarrow(store_path: str, passes: int) -> dict:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from vavl.store import FeatureStore, collate

    store = FeatureStore.open(store_path)
    spec = store.batch_spec()

    def batches(split: str):
        for path in store.shard_paths(split):
            for record_batch in pq.ParquetFile(path).iter_batches(batch_size=32):
                yield collate(pa.Table.from_batches([record_batch]), spec)

    splits = {s: (lambda s=s: batches(s)) for s in store.splits()}
    return dict(start_s=0.0, **timed_passes(splits, passes))


def timed_passes(splits: dict, passes: int) -> dict:
    seconds, counts = [], []
    with MemorySampler() as memory:
        for _ in range(passes):
            seen = [0, 0]
            seconds.append(one_pass(splits, seen))
            counts.append(seen)
    if any(c != counts[0] for c in counts):
        raise RuntimeError(f"passes saw different rows/frames: {counts}")
    steady = statistics.median(seconds[1:]) if passes > 1 else seconds[0]
    return dict(
        rows=counts[0][0],
        frames=counts[0][1],
        first_s=seconds[0],
        steady_s=steady,
        pass_s=seconds,
        peak_rss_mb=memory.peaks["VmHWM"],
        peak_anon_mb=memory.peaks["RssAnon"],
        peak_shm_mb=memory.peaks["RssShmem"],
    )


def run_reader(mode: str, store: Path, passes: int) -> dict:
    done = subprocess.run(
        [sys.executable, __file__, "--read", str(store), "--mode", mode, "--passes", str(passes)],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--sizes", default="300,1200")
    parser.add_argument("--audio-dim", type=int, default=1024)
    parser.add_argument("--visual-dim", type=int, default=1408)
    parser.add_argument("--passes", type=int, default=3, help="reads of every split per run")
    parser.add_argument("--read", help=argparse.SUPPRESS)
    parser.add_argument("--mode", choices=["store", "pyarrow"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.passes < 1:
        parser.error(f"--passes must be >= 1, got {args.passes}")
    if args.read:  # child process: one reader run, JSON on the last stdout line
        result = (read_store if args.mode == "store" else read_pyarrow)(args.read, args.passes)
        print(json.dumps(result))
        return
    run_alone()  # the parent only: its reader children run while it holds the lock

    import ray

    from vavl.runtime import ensure_ray

    ensure_ray(num_cpus=2)
    sizes = [int(s) for s in args.sizes.split(",")]
    with tempfile.TemporaryDirectory(prefix="vavl-bench-") as tmp:
        root = Path(tmp)
        results = [ingest_size(root, n, args.audio_dim, args.visual_dim) for n in sizes]
        ray.shutdown()
        for res in results:
            store = root / f"store-{res['size']}"
            res["pyarrow"] = run_reader("pyarrow", store, args.passes)
            res["store"] = run_reader("store", store, args.passes)
    tables = format_tables(results, args.audio_dim, args.visual_dim, args.passes)
    print(tables)
    record(f"feature store ({args.audio_dim}/{args.visual_dim} dims)", f"```\n{tables}\n```")


def format_tables(results: list[dict], audio_dim: int, visual_dim: int, passes: int) -> str:
    lines = [
        f"dims audio {audio_dim} / visual {visual_dim}, float16 store, batch 32, {passes} passes",
        f"{'utts':>6}{'in MB':>8}{'store MB':>10}{'ingest utt/s':>14}{'ingest MB/s':>13}",
    ]
    for r in results:
        lines.append(
            f"{r['size']:>6}{r['input_mb']:>8.0f}{r['store_mb']:>10.0f}"
            f"{r['ingest_utt_s']:>14.1f}{r['ingest_mb_s']:>13.1f}"
        )
    lines.append(
        f"{'utts':>6} {'reader':<8}{'start s':>8}{'first utt/s':>12}{'steady utt/s':>13}"
        f"{'x pyarrow':>10}{'peak RSS':>9}{'anon':>6}{'shm':>6}"
    )
    for r in results:
        base = r["pyarrow"]["rows"] / r["pyarrow"]["steady_s"]
        for mode in ("pyarrow", "store"):
            m = r[mode]
            first, steady = m["rows"] / m["first_s"], m["rows"] / m["steady_s"]
            lines.append(
                f"{r['size']:>6} {mode:<8}{m['start_s']:>8.1f}{first:>12.1f}{steady:>13.1f}"
                f"{steady / base:>10.2f}{m['peak_rss_mb']:>9.0f}{m['peak_anon_mb']:>6.0f}"
                f"{m['peak_shm_mb']:>6.0f}"
            )
    lines.append("x pyarrow: steady utt/s over plain pyarrow's steady utt/s; memory in MB")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
