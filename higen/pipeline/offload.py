"""CPU offloading: generation on GPUs too small to hold the whole pipeline.

Two policies, named as in diffusers:

- **Model offload** (:func:`enable_model_cpu_offload`): the components (text encoder, UNet,
  autoencoder) live in CPU memory and each is moved whole to the GPU while the pipeline uses it; the
  one used before goes back. Peak GPU memory is the largest component plus its activations, at the
  cost of one host-to-device copy per component per generation (the UNet moves once per stage, not
  per step).
- **Sequential offload** (:func:`enable_sequential_cpu_offload`): the UNet's and the autoencoder's
  weights stay in CPU memory and every module's weights are copied to the GPU just for its own
  forward (accelerate's ``cpu_offload`` hooks). Peak GPU memory is about one layer's weights plus
  activations; every step re-copies all weights, so it is slow. The text encoder is moved whole
  (its ``encode`` reads its own device to place the tokens, which per-module hooks would leave on
  the ``meta`` device).

Neither changes any arithmetic: results equal the non-offloaded pipeline's on the same device.
The pipeline calls :meth:`ComponentOffload.use` when it starts using a component and
:meth:`ComponentOffload.release` when a generation ends.
"""

from __future__ import annotations

import torch
from torch import nn

COMPONENTS = ("text_encoder", "unet", "autoencoder")


class ComponentOffload:
    """Moves whole components between ``device`` (in use) and ``offload_device`` (idle).

    ``managed`` names the components moved whole; the others are left where they are (sequential
    offload keeps their weights on the ``meta`` device behind accelerate's hooks).
    """

    def __init__(self, pipe, device: torch.device | str, managed: tuple[str, ...] = COMPONENTS, offload_device="cpu"):
        unknown = sorted(set(managed) - set(COMPONENTS))
        if unknown:
            raise ValueError(f"unknown components {unknown}; choose from {', '.join(COMPONENTS)}")
        self.device = torch.device(device)
        self.offload_device = torch.device(offload_device)
        self.modules: dict[str, nn.Module] = {name: getattr(pipe, name) for name in managed}
        self.active: str | None = None
        self.release()

    def use(self, name: str) -> None:
        """Put ``name`` on the execution device, the previously used component back in CPU memory."""
        if name not in COMPONENTS:
            raise ValueError(f"unknown component {name!r}; choose from {', '.join(COMPONENTS)}")
        if name == self.active:
            return
        if self.active in self.modules:
            self.modules[self.active].to(self.offload_device)
        if name in self.modules:
            self.modules[name].to(self.device)
        self.active = name

    def release(self) -> None:
        """Every managed component back in CPU memory (end of a generation)."""
        for module in self.modules.values():
            module.to(self.offload_device)
        self.active = None
        if self.device.type == "cuda":
            torch.cuda.empty_cache()


def enable_model_cpu_offload(pipe, device: torch.device | str = "cuda") -> ComponentOffload:
    """Model offload (see the module docstring): ``pipe`` then runs on ``device`` one component at a time."""
    pipe.offload = ComponentOffload(pipe, device)
    return pipe.offload


def enable_sequential_cpu_offload(pipe, device: torch.device | str = "cuda") -> ComponentOffload:
    """Sequential offload (see the module docstring) with accelerate's per-module hooks."""
    from accelerate import cpu_offload

    _check_not_compiled(pipe)
    device = torch.device(device)
    offload = ComponentOffload(pipe, device, managed=("text_encoder",))
    for module in (pipe.unet, pipe.autoencoder):
        module.to("cpu")
        cpu_offload(module, execution_device=device)
    pipe.offload = offload
    return offload


def is_sequentially_offloaded(module: nn.Module) -> bool:
    return hasattr(module, "_hf_hook")


def _check_not_compiled(pipe) -> None:
    # accelerate's hooks run Python at every module call: torch.compile would break its graph there.
    if getattr(pipe.unet, "_compiled_call_impl", None) is not None:
        raise ValueError("sequential offloading and torch.compile do not combine: offload an uncompiled pipeline")
