"""higen: HiGen text-to-video diffusion (CVPR 2024) with spatio-temporal decoupling."""

__version__ = "0.1.0"

from higen.models.config import UNetConfig
from higen.models.unet import HiGenUNet
from higen.pipeline.pipeline import HiGenOutput, HiGenPipeline
from higen.pipeline.settings import GenerationSettings

__all__ = ["HiGenPipeline", "HiGenOutput", "GenerationSettings", "HiGenUNet", "UNetConfig", "__version__"]
