"""Model-zoo weights in MONAI Generative (pre-merge) names and in current MONAI names load into medgen models.

The old-layout state dicts are built from the current networks themselves by inverting the renaming MONAI's
``load_old_state_dict`` undoes (``attn.to_q`` → ``to_q``, ``attn.out_proj`` → ``proj_attn``, ``postconv`` → ``conv``).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from medgen.finetune import load_pretrained, load_submodule
from medgen.models import DiffusionModel
from medgen.nets.autoencoder import KLAutoencoder
from medgen.nets.conditioning import ConditionSpec
from tests.helpers import tiny_unet


def _old_names(state: dict[str, torch.Tensor], projection: bool = True) -> dict[str, torch.Tensor]:
    """MONAI Generative's names for a current MONAI state dict (without ``proj_attn`` when ``projection`` is off)."""
    old = {}
    for key, value in state.items():
        if ".attn.out_proj." in key and not projection:
            continue
        name = key.replace(".attn.to_", ".to_").replace(".attn.out_proj.", ".proj_attn.")
        old[name.replace("postconv", "conv")] = value
    return old


def _autoencoder(spatial_dims: int, seed: int) -> KLAutoencoder:
    torch.manual_seed(seed)
    net = KLAutoencoder(spatial_dims, channels=(8, 16), attention_levels=(False, True), num_res_blocks=1,
                        norm_num_groups=8)  # fmt: skip
    with torch.no_grad():
        for p in net.parameters():
            p.normal_(std=0.05)
    return net


@pytest.mark.parametrize("layout", ["old", "current"])
@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_diffusion_unet_loads_in_both_layouts_with_the_renames_reported(
    tmp_path: Path, spatial_dims: int, layout: str
) -> None:
    source = tiny_unet(spatial_dims, seed=1).unet.state_dict()
    path = tmp_path / "model.pt"
    torch.save(_old_names(source) if layout == "old" else source, path)
    model = DiffusionModel(tiny_unet(spatial_dims, seed=0))
    report = load_pretrained(model, path, strict=True)
    loaded = model.net.unet.state_dict()  # type: ignore[union-attr]
    assert all(torch.equal(loaded[k], v) for k, v in source.items())
    attention = [k for k in source if ".attn." in k]
    assert len(attention) == 32  # four attention blocks (down, middle, two up) of 8 tensors in the tiny net
    assert len(report.renamed) == (len(attention) if layout == "old" else 0)
    summary = report.summary()
    if layout == "old":
        assert (
            "renamed: middle_block.attention.to_q.weight -> net.unet.middle_block.attention.attn.to_q.weight "
            "(MONAI Generative name" in summary
        )
        assert (
            "renamed: middle_block.attention.proj_attn.bias -> net.unet.middle_block.attention.attn.out_proj.bias "
            "(MONAI Generative's proj_attn" in summary
        )
    assert not report.missing and not report.unexpected and not report.mismatched
    reference = tiny_unet(spatial_dims, seed=2).unet  # MONAI's own renaming gives the same tensors
    reference.load_old_state_dict(dict(torch.load(path, weights_only=True)))
    assert all(torch.equal(loaded[k], v) for k, v in reference.state_dict().items())


def test_missing_and_unexpected_keys_are_named_with_why(tmp_path: Path) -> None:
    """An old class-conditioned UNet into a medgen net whose condition embedding replaces MONAI's."""
    old_net = tiny_unet(2, seed=1)
    old = {**_old_names(old_net.unet.state_dict()), "class_embedding.weight": torch.randn(3, 32)}
    path = tmp_path / "old.pt"
    torch.save(old, path)
    model = DiffusionModel(tiny_unet(2, conditions=[ConditionSpec("label", num_classes=2)]))
    report = load_pretrained(model, path)
    summary = report.summary()
    assert report.unexpected == ["net.unet.class_embedding.weight"]
    assert "0 shape mismatches" in summary and "1 unused" in summary
    assert "  unused: net.unet.class_embedding.weight" in summary
    assert "  new: net.unet.class_embedding.embeddings.label.weight" in summary
    assert "(initialised fresh)" in summary.splitlines()[0]
    assert sum(line.startswith("  renamed: ") for line in summary.splitlines()) == 32


@pytest.mark.parametrize("projection", [True, False])
@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_autoencoder_kl_old_layout_loads_as_a_first_stage(tmp_path: Path, spatial_dims: int, projection: bool) -> None:
    source = _autoencoder(spatial_dims, 1).state_dict()
    path = tmp_path / "autoencoder.pt"
    torch.save(_old_names(source, projection), path)
    target = _autoencoder(spatial_dims, 0)
    load_submodule(target, path, "pretrained.autoencoder_from")
    loaded = target.state_dict()
    renamed = [k for k in source if ".attn." in k or "postconv" in k]
    assert any("postconv" in k for k in renamed)
    for key, value in source.items():
        if ".attn.out_proj." in key and not projection:  # the old block had none: identity and zero, as MONAI's
            expected = torch.eye(value.shape[0]) if key.endswith("weight") else torch.zeros_like(value)
            assert torch.equal(loaded[key], expected), key
        else:
            assert torch.equal(loaded[key], value), key
    reference = _autoencoder(spatial_dims, 2)  # MONAI's own renaming gives the same tensors
    reference.load_old_state_dict(dict(torch.load(path, weights_only=True)))
    assert all(torch.equal(loaded[k], v) for k, v in reference.state_dict().items())
    # The current layout loads as it is.
    torch.save(source, path)
    fresh = _autoencoder(spatial_dims, 0)
    load_submodule(fresh, path, "pretrained.autoencoder_from")
    assert all(torch.equal(fresh.state_dict()[k], v) for k, v in source.items())
