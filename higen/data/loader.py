"""``TrainingData``: deterministic, resumable, rank-sliced batches of video clips and images.

The order contract (docs/data.md, "Determinism"):
- each stream (video, image) visits its samples in a fresh permutation per epoch, seeded by
  (seed, stream, epoch);
- global step k of a stream takes the next ``world_size * batch_size`` entries of that permutation and
  rank r the contiguous slice ``[r * batch_size, (r + 1) * batch_size)`` of them, so one process with
  batch 4 sees exactly what two processes with batch 2 see together; the last incomplete global step
  of an epoch is dropped, so every rank has the same number of steps per epoch;
- the concatenation of a rank's slices is that rank's *order*; a batch is the next ``batch_size``
  entries of it that load. A sample that cannot be used is counted by reason and replaced by the next
  entry of the same rank's order (so with skips, ranks drift apart by the skipped entries);
- random choices inside a sample (the start frame) come from a generator keyed by
  (seed, stream, epoch, global index): never by rank, worker or time.
The position in the rank's order (epoch, entry) is the whole state: ``state_dict`` records it with the
skip counts, and loading it starts the next batch from the same entry with any number of workers.

Loading runs in a ``torch.utils.data.DataLoader`` over a map-style dataset; the loader's batch sampler
is the rank's order cut into ``batch_size`` chunks, so workers prefetch exactly the entries that come next.
"""

from __future__ import annotations

import logging
from collections import Counter, deque
from typing import Any, Iterator, Mapping

import numpy as np
import torch
from torch.utils.data import DataLoader

from higen.data.batch import Batch, collate
from higen.data.build import build_sources
from higen.data.config import DataSection
from higen.data.dataset import STREAM_TAG, LoadDataset, Loaded, as_list
from higen.data.sources import Sample, Source

log = logging.getLogger("higen.data")

STREAMS = ("video", "image")
STATE_FORMAT = "higen-data-state"
_ORDER_DOMAIN = 0x0D  # differs from the per-sample draws' domain (higen.data.dataset), keeping the two independent
_LOGGED_SKIPS = 20  # per stream: the first skips are logged one by one, later ones only counted


class NoUsableData(ValueError):
    """A whole epoch of a stream where no entry could be loaded: the data, not the run, needs fixing."""


def epoch_permutation(seed: int, stream: str, epoch: int, length: int) -> np.ndarray:
    """The global visiting order of a stream in one epoch (same in every process)."""
    return np.random.default_rng([_ORDER_DOMAIN, seed % 2**64, STREAM_TAG[stream], epoch]).permutation(length)


class _Chunks:
    """The rank's order from (epoch, position) on, forever, as ``batch_size`` chunks of dataset items."""

    def __init__(self, stream: _Stream, epoch: int, position: int) -> None:
        self.stream, self.epoch, self.position = stream, epoch, position

    def __iter__(self) -> Iterator[list[tuple[int, int, int]]]:
        stream, epoch, position = self.stream, self.epoch, self.position
        while True:
            chunk = []
            for _ in range(stream.batch_size):
                chunk.append((epoch, position, stream.global_index(epoch, position)))
                epoch, position = stream.after(epoch, position)
            yield chunk


class _Stream:
    """One stream (video or image) of one rank: its order, position, skip counts and loader."""

    def __init__(self, name: str, source: Source, *, seed: int, rank: int, world_size: int, batch_size: int, num_workers: int) -> None:
        self.name, self.source, self.seed = name, source, seed
        self.rank, self.world_size, self.batch_size, self.num_workers = rank, world_size, batch_size, num_workers
        self.length = len(source)
        if self.length < world_size * batch_size:
            raise ValueError(
                f"the {name} data has {self.length} samples, fewer than one global batch "
                f"({world_size} process(es) x {batch_size}); add data or lower the batch size"
            )
        self.epoch_size = self.length // (world_size * batch_size) * batch_size  # entries of this rank per epoch
        self.epoch = self.position = 0
        self.skipped_total: Counter[str] = Counter()
        self.skipped_epoch: Counter[str] = Counter()
        self.skipped_previous: dict[str, int] = {}  # the last finished epoch's counts
        self._permutations: dict[int, np.ndarray] = {}
        self._iterator: Iterator[list[Loaded]] | None = None
        self._pending: deque[Loaded] = deque()
        self._last_skip = ""

    # --------------------------------------------------------------------------------- order

    def global_index(self, epoch: int, position: int) -> int:
        step, offset = divmod(position, self.batch_size)
        return int(self._permutation(epoch)[(step * self.world_size + self.rank) * self.batch_size + offset])

    def after(self, epoch: int, position: int) -> tuple[int, int]:
        return (epoch, position + 1) if position + 1 < self.epoch_size else (epoch + 1, 0)

    def _permutation(self, epoch: int) -> np.ndarray:
        if epoch not in self._permutations:
            if len(self._permutations) >= 2:  # the loader runs at most one epoch ahead of the consumer
                del self._permutations[min(self._permutations)]
            self._permutations[epoch] = epoch_permutation(self.seed, self.name, epoch, self.length)
        return self._permutations[epoch]

    # ------------------------------------------------------------------------------- batches

    def next_batch(self) -> Batch:
        samples: list[Sample] = []
        indices: list[int] = []
        while len(samples) < self.batch_size:
            loaded = self._next_loaded()
            if loaded.sample is None:
                self._skip(loaded)
            else:
                samples.append(loaded.sample)
                indices.append(loaded.index)
            self._advance()
        return collate(samples, indices)

    def _next_loaded(self) -> Loaded:
        if self._iterator is None:
            self._iterator = iter(self._loader())
        while not self._pending:
            self._pending.extend(next(self._iterator))
        loaded = self._pending.popleft()
        assert (loaded.epoch, loaded.position) == (self.epoch, self.position), "loader out of step with the order"
        return loaded

    def _loader(self) -> DataLoader:
        # An explicit generator: creating a DataLoader iterator otherwise draws its worker base seed from
        # torch's global RNG, which would shift the trainer's dropout on every (re)start of the loader.
        return DataLoader(
            LoadDataset(self.source, self.name, self.seed), batch_sampler=_Chunks(self, self.epoch, self.position),
            num_workers=self.num_workers, collate_fn=as_list, generator=torch.Generator().manual_seed(self.seed % 2**63),
            prefetch_factor=2 if self.num_workers else None,
            # Workers forked from a process whose OpenMP pool has run can hang in their first torch op (seen in
            # CI: both workers parked on a futex inside fit_frames); forkserver workers start from a clean process.
            multiprocessing_context="forkserver" if self.num_workers else None,
        )

    def _skip(self, loaded: Loaded) -> None:
        self.skipped_total[loaded.reason] += 1
        self.skipped_epoch[loaded.reason] += 1
        self._last_skip = loaded.detail
        if sum(self.skipped_total.values()) <= _LOGGED_SKIPS:
            log.warning("skipped %s sample %d (%s): %s", self.name, loaded.index, loaded.reason, loaded.detail)

    def _advance(self) -> None:
        self.epoch, self.position = self.after(self.epoch, self.position)
        if self.position == 0:
            # Counted per epoch (saved with the position): bad entries at the end of one epoch and the start
            # of the next are not a whole epoch of failures.
            if sum(self.skipped_epoch.values()) >= self.epoch_size:
                raise NoUsableData(
                    f"no {self.name} sample of epoch {self.epoch - 1} could be loaded: all {self.epoch_size} entries were "
                    f"skipped ({_counts(self.skipped_epoch)}); last: {self._last_skip}"
                )
            self._report_epoch(self.epoch - 1)

    def _report_epoch(self, epoch: int) -> None:
        self.skipped_previous = dict(self.skipped_epoch)
        report = log.warning if self.skipped_epoch else log.info
        report("%s data, epoch %d done (rank %d): skipped %d of %d entries%s", self.name, epoch, self.rank,
               sum(self.skipped_epoch.values()), self.epoch_size, f" ({_counts(self.skipped_epoch)})" if self.skipped_epoch else "")
        self.skipped_epoch.clear()

    # --------------------------------------------------------------------------------- state

    def state_dict(self) -> dict:
        return {
            "length": self.length, "batch_size": self.batch_size, "epoch": self.epoch, "position": self.position,
            "skipped_total": dict(self.skipped_total), "skipped_epoch": dict(self.skipped_epoch),
            "skipped_previous": dict(self.skipped_previous),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        for key in ("length", "batch_size"):
            if state[key] != getattr(self, key):
                raise ValueError(
                    f"cannot resume the {self.name} data: the saved position is for {key} {state[key]}, now {getattr(self, key)}"
                )
        if not 0 <= state["position"] < self.epoch_size:
            raise ValueError(f"cannot resume the {self.name} data: position {state['position']} is outside an epoch of {self.epoch_size}")
        self.close()
        self.epoch, self.position = int(state["epoch"]), int(state["position"])
        self.skipped_total, self.skipped_epoch = Counter(state["skipped_total"]), Counter(state["skipped_epoch"])
        self.skipped_previous = dict(state["skipped_previous"])

    def skipped(self) -> dict:
        return {"epoch_index": self.epoch, "position": self.position, "total": dict(self.skipped_total),
                "epoch": dict(self.skipped_epoch), "previous_epoch": dict(self.skipped_previous)}

    def close(self) -> None:
        iterator, self._iterator = self._iterator, None
        self._pending.clear()
        shutdown = getattr(iterator, "_shutdown_workers", None)  # stop worker processes now, not at garbage collection
        if shutdown is not None:
            shutdown()


def _counts(counter: Mapping[str, int]) -> str:
    return ", ".join(f"{reason} {n}" for reason, n in sorted(counter.items()))


class TrainingData:
    """Batches for one rank of a training run (see the module docstring for the order contract).

    ``cache_settings``: with ``data.source = cache``, the identity of the encoders the trainer uses
    (autoencoder, text encoder, image embedder, ...); the caches are opened with
    ``cache_fingerprint(cfg, kind, cache_settings)`` as the expected settings and refused when they differ.
    """

    def __init__(self, cfg: DataSection, *, seed: int, rank: int, world_size: int, batch_size: int,
                 image_batch_size: int, num_workers: int, cache_settings: Mapping[str, Any] | None = None) -> None:
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is not a process of a world of {world_size}")
        if batch_size < 1 or image_batch_size < 1 or num_workers < 0:
            raise ValueError(f"batch sizes must be at least 1 and num_workers at least 0; got {batch_size}, {image_batch_size}, {num_workers}")
        sources = build_sources(cfg, cache_settings)
        self.seed, self.rank, self.world_size = seed, rank, world_size
        sizes = {"video": batch_size, "image": image_batch_size}
        self._streams = {
            kind: _Stream(kind, source, seed=seed, rank=rank, world_size=world_size, batch_size=sizes[kind], num_workers=num_workers)
            for kind, source in sources.items()
        }

    def has_videos(self) -> bool:
        return "video" in self._streams

    def has_images(self) -> bool:
        return "image" in self._streams

    def source(self, kind: str) -> Source:
        """The map-style source behind a stream (e.g. to build a latent cache from it)."""
        return self._stream(kind).source

    def next_batch(self, kind: str) -> Batch:
        """The next batch of this rank's ``kind`` stream ("video" or "image"); epochs follow one another forever."""
        return self._stream(kind).next_batch()

    def state_dict(self) -> dict:
        """This rank's exact position in both streams (JSON-able). Save every rank's: with skips they differ."""
        return {"format": STATE_FORMAT, "version": 1, "seed": self.seed, "rank": self.rank, "world_size": self.world_size,
                "streams": {kind: stream.state_dict() for kind, stream in self._streams.items()}}

    def load_state_dict(self, state: Mapping[str, Any] | list[Mapping[str, Any]]) -> None:
        """Continue exactly where ``state`` was taken: this rank's ``state_dict()``, or the list of every rank's."""
        if isinstance(state, list):
            state = next((s for s in state if s.get("rank") == self.rank), None) or {}
        if state.get("format") != STATE_FORMAT:
            raise ValueError(f"not a saved data position for rank {self.rank} (format {state.get('format')!r})")
        for key in ("seed", "world_size"):
            if state[key] != getattr(self, key):
                raise ValueError(f"cannot resume the data: it was saved with {key} {state[key]}, now {getattr(self, key)}")
        if set(state["streams"]) != set(self._streams):
            raise ValueError(f"cannot resume the data: saved streams {sorted(state['streams'])}, now {sorted(self._streams)}")
        for kind, stream in self._streams.items():
            stream.load_state_dict(state["streams"][kind])

    def skipped(self) -> dict:
        """Files skipped by this rank: ``{"total": {reason: n}, "epoch": {reason: n}, "streams": {kind: details}}``;
        "epoch" counts each stream's current epoch."""
        streams = {kind: stream.skipped() for kind, stream in self._streams.items()}
        total, epoch = Counter(), Counter()
        for details in streams.values():
            total.update(details["total"])
            epoch.update(details["epoch"])
        return {"total": dict(total), "epoch": dict(epoch), "streams": streams}

    def close(self) -> None:
        """Stop the loader workers (a later ``next_batch`` starts them again at the current position)."""
        for stream in self._streams.values():
            stream.close()

    def __enter__(self) -> TrainingData:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _stream(self, kind: str) -> _Stream:
        if kind not in STREAMS:
            raise ValueError(f"kind must be 'video' or 'image'; got {kind!r}")
        if kind not in self._streams:
            raise ValueError(f"no {kind} data configured (set data.{kind}s)")
        return self._streams[kind]
