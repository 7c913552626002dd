import pytest
import torch

from MedSegAILib.errors import BundleError
from MedSegAILib.networks import build_network, network_names
from MedSegAILib.networks.deeplab import DeepLabV3Plus3D
from MedSegAILib.networks.deeplab import ASPP3D

CASES = {
    "unet": {"in_channels": 2, "out_channels": 4, "filters": [4, 8, 16], "strides": [1, 2, 2]},
    "unet_2d": {"in_channels": 2, "out_channels": 4, "filters": [4, 8, 16], "strides": [1, 2, 2], "spatial_dims": 2},
    "attention_unet": {"in_channels": 2, "out_channels": 4, "channels": [4, 8, 16], "strides": [2, 2]},
    "deeplabv3plus": {"in_channels": 2, "out_channels": 4, "channels": [4, 8, 16, 16], "aspp_channels": 8,
                      "low_level_channels": 4},
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_every_architecture_maps_patches_to_class_logits(case):
    name = "unet" if case.startswith("unet") else case
    net = build_network(name, CASES[case]).eval()
    x = torch.randn(2, 2, 32, 24, 16)
    with torch.no_grad():
        out = net(x)
    assert out.shape == (2, 4, 32, 24, 16)
    assert torch.isfinite(out).all()


def test_vnet_is_registered_and_runs_on_multiples_of_16():
    net = build_network("vnet", {"in_channels": 1, "out_channels": 3}).eval()
    with torch.no_grad():
        assert net(torch.zeros(1, 1, 16, 16, 16)).shape == (1, 3, 16, 16, 16)


def test_2d_unet_treats_slices_independently():
    net = build_network("unet", CASES["unet_2d"]).eval()
    x = torch.randn(1, 2, 16, 16, 3)
    with torch.no_grad():
        full = net(x)
        single = net(x[..., 1:2])
    torch.testing.assert_close(full[..., 1:2], single, atol=1e-5, rtol=1e-5)


def test_deeplab_uses_dilation_beyond_output_stride_and_image_pooling():
    net = DeepLabV3Plus3D(1, 2, channels=(4, 8, 8, 8, 8), output_stride=4, low_level_stage=1, aspp_channels=8)
    strides = [s.conv.unit0.conv.stride[0] if hasattr(s.conv, "unit0") else None for s in net.stages]
    dilations = [s.conv.unit0.conv.dilation[0] for s in net.stages]
    assert strides == [2, 2, 1, 1]
    assert dilations == [1, 1, 2, 4]
    aspp = ASPP3D(8, 4, rates=(1, 2, 3))
    assert len(aspp.branches) == 4  # 1x1 + one per rate, plus the pooling branch
    # the image-pooling branch makes the output depend on global context
    x = torch.zeros(1, 8, 6, 6, 6)
    y = x.clone()
    y[..., 5, 5, 5] = 10.0
    aspp.eval()
    with torch.no_grad():
        assert not torch.allclose(aspp(x)[..., 0, 0, 0], aspp(y)[..., 0, 0, 0])


def test_registry_rejects_unknown_names_and_bad_arguments():
    assert {"unet", "attention_unet", "vnet", "deeplabv3plus", "intensity_window"} <= set(network_names())
    with pytest.raises(BundleError, match="unknown network 'resnet9000'"):
        build_network("resnet9000", {})
    with pytest.raises(BundleError, match="rejects its arguments"):
        build_network("unet", {"in_channels": 1, "out_channels": 2, "filters": [4, 8], "strides": [1, 2, 2]})


@pytest.mark.parametrize("dims, strides, filters", [
    (3, [1, 2, 2, 2], [8, 16, 32, 64]),
    (3, [1, [2, 2, 1], [2, 2, 2]], [4, 8, 16]),   # anisotropic first downsampling, as for thick-slice CT
    (2, [1, 2, 2], [4, 8, 16]),
])
def test_unet_is_monai_dynunet_weight_for_weight(dims, strides, filters):
    """Same seed -> same weights, same parameter names, same outputs as MONAI's DynUNet."""
    from monai.networks.nets import DynUNet

    from MedSegAILib.networks import UNet

    per_axis = [[s] * dims if isinstance(s, int) else s for s in strides]
    torch.manual_seed(3)
    ours = UNet(dims, 2, 3, [3] * len(strides), per_axis, per_axis[1:], filters).eval()
    torch.manual_seed(3)
    theirs = DynUNet(dims, 2, 3, [3] * len(strides), per_axis, per_axis[1:], filters=filters,
                     norm_name=("instance", {"affine": True})).eval()
    mine, reference = ours.state_dict(), theirs.state_dict()
    assert list(mine) == list(reference)
    for name in reference:
        torch.testing.assert_close(mine[name], reference[name], rtol=0, atol=0, msg=name)
    x = torch.randn(2, 2, *([16] * dims))
    with torch.inference_mode():
        torch.testing.assert_close(ours(x), theirs(x))


def test_unet_bundles_are_built_without_importing_monai():
    import subprocess
    import sys

    code = ("import sys\nfrom MedSegAILib.networks import build_network\n"
            "build_network('unet', {'in_channels': 1, 'out_channels': 2, 'filters': [4, 8, 16], 'strides': [1, 2, 2]})\n"
            "import MedSegAILib.pipeline, MedSegAILib.outputs, MedSegAILib.cli\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'monai'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
