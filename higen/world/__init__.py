"""The procedural text-video world (shapes moving and changing over backgrounds) and its automatic judge.

- ``spec``: the vocabulary, ``ClipSpec`` and ``sample_spec`` (train / held-out splits)
- ``render``: ``render(spec, frames, height, width) -> uint8 f h w 3``
- ``captions``: ``make_caption`` and ``parse_prompt``
- ``dataset``: ``WorldDataset`` and ``export`` (MP4 files + manifest.csv)
- ``judge``: ``measure(frames)`` and ``score(prompt, frames)``
- ``evaluate``: ``evaluate_model``, ``control_sweep``, ``evaluate_ground_truth``, ``evaluate_videos``
"""

from higen.world.captions import make_caption, parse_prompt
from higen.world.dataset import WorldDataset, export
from higen.world.judge import Measurement, measure, score
from higen.world.render import render
from higen.world.spec import HELD_OUT, ClipSpec, sample_spec

__all__ = [
    "HELD_OUT", "ClipSpec", "Measurement", "WorldDataset", "export", "make_caption", "measure", "parse_prompt",
    "render", "sample_spec", "score",
]
