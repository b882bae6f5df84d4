"""Training data: manifests, WebDataset shards, the procedural world and latent caches, decoded with
PyAV into deterministic, resumable, rank-sliced batches (docs/data.md)."""

from higen.data.batch import Batch
from higen.data.build import build_sources, cache_fingerprint, clip_sampling
from higen.data.cache import CacheSource, build_cache, open_cache
from higen.data.decode import SKIP_REASONS, ClipSampling, SkipSample, choose_frames, decode_clip, fit_frames
from higen.data.loader import TrainingData, epoch_permutation
from higen.data.manifest import read_manifest
from higen.data.shards import expand_shards, read_shards
from higen.data.sources import ManifestSource, Sample, Source, WorldSource

__all__ = [
    "Batch", "TrainingData", "build_cache", "open_cache", "CacheSource", "cache_fingerprint", "build_sources", "clip_sampling",
    "ClipSampling", "SkipSample", "SKIP_REASONS", "choose_frames", "decode_clip", "fit_frames", "epoch_permutation",
    "read_manifest", "expand_shards", "read_shards", "Sample", "Source", "ManifestSource", "WorldSource",
]
