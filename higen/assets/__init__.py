"""Files shipped inside the package: the bundled model's folder (docs/bundled_model.md).

Only paths live here, so any layer can find the bundled model; ``higen.bundled`` writes it.
"""

from __future__ import annotations

from pathlib import Path

BUNDLED_DIR = Path(__file__).parent / "bundled_model"


def bundled_model_path() -> Path:
    """The bundled model folder; a clear error if this installation has none."""
    if not (BUNDLED_DIR / "model_index.json").is_file():
        raise FileNotFoundError(
            f"no model was named and the bundled model is not installed at {BUNDLED_DIR}; pass --model FOLDER"
        )
    return BUNDLED_DIR
