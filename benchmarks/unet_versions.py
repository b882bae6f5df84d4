"""UNet forward time of this checkout against the code of another commit, same weights, same run.

    python benchmarks/unet_versions.py --ref 19784ea            # bundled-like UNet, F = 1 and 16, CPU
    python benchmarks/unet_versions.py --ref 19784ea --device cuda --preset released --dtype bf16

Layout changes in ``higen/models`` change the one code path every variant runs, so ``higen bench
--compare`` cannot show them; this script can. The other commit's ``higen`` package is extracted
with ``git archive`` into a temporary folder and imported under another name (its absolute
``higen.`` imports rewritten), its UNet gets this checkout's weights (same state-dict keys), the two
outputs are compared, and both forwards are timed interleaved round by round (``higen.benchmark``).
"""

from __future__ import annotations

import argparse
import importlib
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

from higen import benchmark as B
from higen.models.config import UNetConfig
from higen.models.unet import HiGenUNet

REPO = Path(__file__).resolve().parents[1]


def import_package_at(ref: str, folder: Path, name: str = "higen_then"):
    """The ``higen`` package as of git ``ref``, importable as ``name``."""
    archive = subprocess.run(["git", "-C", str(REPO), "archive", ref, "higen"], check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive, check=True)
    (folder / "higen").rename(folder / name)
    for path in (folder / name).rglob("*.py"):
        text = path.read_text()
        path.write_text(re.sub(r"\b(from|import) higen\b", rf"\1 {name}", text))
    sys.path.insert(0, str(folder))
    return importlib.import_module(f"{name}.models.unet"), importlib.import_module(f"{name}.models.config")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ref", required=True, help="the commit to compare with (e.g. the one before a change)")
    p.add_argument("--preset", choices=B.PRESETS, default="bundled-like")
    p.add_argument("--frames", type=int, default=None, help="default: 16 bundled-like, 32 released")
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--rounds", type=int, default=20)
    p.add_argument("--dtype", choices=tuple(B.DTYPES), default="fp32")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int)
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device, dtype = torch.device(args.device), B.DTYPES[args.dtype]

    released = args.preset == "released"
    frames = args.frames or (32 if released else 16)
    latent_hw = (32, 56) if released else (8, 8)
    config = UNetConfig() if released else B.bundled_like_config()
    with tempfile.TemporaryDirectory() as tmp:
        unet_then_module, config_then_module = import_package_at(args.ref, Path(tmp))
        now = HiGenUNet(config).to(device=device, dtype=dtype).eval()
        for p in now.parameters():  # zero-initialised branches would hide differences in the outputs
            if not p.detach().any():
                p.data.normal_(0.0, 0.02)
        then = unet_then_module.HiGenUNet(config_then_module.UNetConfig(**config.to_dict())).to(device=device, dtype=dtype).eval()
        then.load_state_dict(now.state_dict())
        print(f"{args.preset} UNet, batch {args.batch}, latents {latent_hw}, {args.dtype}, {B.environment(device)}")
        for f in sorted({1, frames}):
            calls = {}
            for name, m in (("then", then), ("now", now)):
                torch.manual_seed(0)  # the same random inputs for both
                calls[name] = B.unet_call(m, config, f, latent_hw, args.batch, device)
            a, b = calls["then"](), calls["now"]()
            times = B.time_interleaved(calls, device, args.rounds)
            print(f"F={f:3d}: {args.ref} {statistics.median(times['then']):.4f} s, this checkout {statistics.median(times['now']):.4f} s "
                  f"(medians of {args.rounds}); speed-up {B.paired_ratio(times['then'], times['now']):.3f} (median of per-round ratios); "
                  f"outputs differ by at most {(a.float() - b.float()).abs().max().item():.2e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
