"""``higen info``: what a model folder holds."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def add_parser(sub) -> None:
    p = sub.add_parser("info", help="show a model folder's components, parameter counts and config")
    p.add_argument("model", type=Path, nargs="?", help="model folder (default: the bundled model)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(run=run)


def describe(model: Path) -> dict:
    from higen.io.checkpoint import parameter_count
    from higen.io.files import read_json

    index_path = model / "model_index.json"
    if not index_path.is_file():
        raise FileNotFoundError(f"{model} is not a higen model folder (no model_index.json)")
    index = read_json(index_path)
    report: dict = {"model": str(model), "components": {}}
    for name in index.get("components", []):
        folder = model / name
        params = sum(parameter_count(weights) for weights in sorted(folder.glob("*.safetensors")))
        configs = {p.name: read_json(p) for p in sorted(folder.glob("*.json"))}
        report["components"][name] = {"parameters": params, "config": configs}
    for extra in ("pipeline.json", "scheduler.json"):
        if (model / extra).is_file():
            report[extra.removesuffix(".json")] = read_json(model / extra)
    return report


def run(args: argparse.Namespace) -> int:
    model = args.model
    if model is None:
        from higen.assets import bundled_model_path

        model = bundled_model_path()
    report = describe(model)
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"model folder: {report['model']}")
    for name, comp in report["components"].items():
        print(f"  {name:13s} {comp['parameters']:>15,} parameters")
    unet_config = report["components"].get("unet", {}).get("config", {}).get("config.json", {})
    for key, value in unet_config.items():
        print(f"    unet.{key} = {value}")
    for key, value in report.get("pipeline", {}).items():
        print(f"    generation.{key} = {value}")
    return 0
