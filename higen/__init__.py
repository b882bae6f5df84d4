"""higen: HiGen text-to-video diffusion (CVPR 2024) with spatio-temporal decoupling.

The package's layers, lowest first; a module imports only from its own layer or the ones below:

1. ``io`` (files, videos, checkpoints), ``assets`` (the bundled model's path), ``diffusion`` (schedule,
   samplers, guidance), ``cues`` (HiGen's motion and appearance cues)
2. ``models`` (the UNet), ``encoders`` (text encoders, the autoencoder, image embedders)
3. ``pipeline`` (generation), ``world`` (the procedural world and its judge), ``tiny`` (tiny random components)
4. ``data`` (training data, the world among its sources)
5. ``training``
6. ``benchmark``, ``bundled`` (installing the bundled model), ``evaluation`` (FVD, flicker: measures of any videos)
7. ``cli`` (the ``higen`` command and the web page)

Tests' helpers live in ``tests/``, outside the package.
"""

__version__ = "0.1.0"

from higen.models.config import UNetConfig
from higen.models.unet import HiGenUNet
from higen.pipeline.pipeline import HiGenOutput, HiGenPipeline
from higen.pipeline.settings import GenerationSettings

__all__ = ["HiGenPipeline", "HiGenOutput", "GenerationSettings", "HiGenUNet", "UNetConfig", "__version__"]
