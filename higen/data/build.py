"""From a ``DataSection`` to sources: which source reads ``data.videos`` / ``data.images``, and the
fingerprint a latent cache must match."""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

from higen.data.cache import open_cache
from higen.data.config import DataSection
from higen.data.decode import ClipSampling
from higen.data.manifest import read_manifest
from higen.data.shards import read_shards
from higen.data.sources import Source, world_source


def clip_sampling(cfg: DataSection, kind: str) -> ClipSampling:
    """How a stream's clips are sampled: ``data.frames`` frames for "video", one for "image"; at latent size
    (1/8, the SD autoencoder's factor) for the latent world."""
    spec = ClipSampling.from_config(cfg, frames=1 if kind == "image" else None)
    return dataclasses.replace(spec, height=cfg.height // 8, width=cfg.width // 8) if cfg.latent else spec


def build_sources(cfg: DataSection, cache_settings: Mapping[str, Any] | None = None) -> dict[str, Source]:
    """``{"video": source, "image": source}`` for the streams ``cfg`` configures (at least one).

    Every start-up problem (missing manifest or files, bad columns, unmatched shard patterns, a cache
    built with other settings) is raised here, before training starts.
    """
    if cfg.source == "world":
        # The world renders both: clips for video steps, single frames for image steps. An image is the clip's
        # middle frame (clip time (F // 2) / F), the frame video steps use as the spatial prior, so the spatial
        # stage learns the frame the temporal stage expects (halfway through a colour change or a growth).
        middle = (cfg.frames // 2) / cfg.frames
        return {kind: world_source(cfg.length, clip_sampling(cfg, kind), cfg.world_seed, cfg.latent, start=middle if kind == "image" else 0.0)
                for kind in ("video", "image")}
    locations = {kind: location for kind, location in (("video", cfg.videos), ("image", cfg.images)) if location}
    if not locations:
        raise ValueError(f"data.source={cfg.source} needs data.videos and/or data.images")
    return {kind: _source(cfg, kind, location, cache_settings) for kind, location in locations.items()}


def _source(cfg: DataSection, kind: str, location: str, cache_settings: Mapping[str, Any] | None) -> Source:
    spec = clip_sampling(cfg, kind)
    if cfg.source == "manifest":
        return read_manifest(location, spec, root=cfg.root, path_column=cfg.path_column, caption_column=cfg.caption_column,
                             check_files=cfg.check_files)
    if cfg.source == "webdataset":
        return read_shards(location, spec, root=cfg.root)
    if cfg.source == "cache":
        if cache_settings is None:
            raise ValueError("data.source=cache needs the encoders' identity to check the cache against (cache_settings)")
        return open_cache(location, cache_fingerprint(cfg, kind, cache_settings))
    raise ValueError(f"data.source must be one of manifest, webdataset, world, cache; got {cfg.source!r}")


def cache_fingerprint(cfg: DataSection, kind: str, encoders: Mapping[str, Any]) -> dict[str, Any]:
    """The settings a latent cache of stream ``kind`` is built with and checked against: the caller's
    ``encoders`` identity (autoencoder, text encoder, image embedder, cue settings, ...) plus what shapes
    a clip (kind, frames, fps or stride, size, start and too-short rules)."""
    spec = clip_sampling(cfg, kind)
    clip = {
        "kind": kind, "frames": spec.frames, "height": spec.height, "width": spec.width,
        "fps": spec.fps if spec.frame_stride is None else None, "frame_stride": spec.frame_stride,
        "random_start": spec.random_start, "min_frames_policy": spec.min_frames_policy,
    }
    overlap = sorted(set(clip) & set(encoders))
    if overlap:
        raise ValueError(f"cache settings: {', '.join(overlap)} come from the data config; leave them out of the encoders' identity")
    return dict(encoders) | clip
