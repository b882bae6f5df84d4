import json
from pathlib import Path

import pytest
import torch

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(scope="session")
def vgen_tiny():
    """The official implementation's tiny random HiGen: (vgen_kwargs, state_dict, io tensors)."""
    from safetensors.torch import load_file

    folder = FIXTURES / "vgen_higen_tiny"
    config = json.loads((folder / "config.json").read_text())
    return config["vgen_kwargs"], load_file(str(folder / "state_dict.safetensors")), load_file(str(folder / "io.safetensors"))


@pytest.fixture(autouse=True)
def _deterministic():
    torch.manual_seed(0)
    yield
