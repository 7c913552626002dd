"""Inference on the CPU takes the faster kernels for 3D convolutions and upsamplings, with unchanged results."""

import numpy as np
import pytest
import torch

from MedSegAILib.bundle.card import InferenceSettings
from MedSegAILib.inference import InferenceEngine
from MedSegAILib.networks import build_network
from MedSegAILib.networks.cpu_kernels import (ChannelsLastInstanceNorm3d, MatmulConvTranspose3d, OneDNNConv3d,
                                              use_fast_cpu_kernels)

# the shipped demo's U-Net and the brain-extraction U-Net, on their windows
NETWORKS = {
    "demo U-Net": ("unet", {"in_channels": 1, "out_channels": 5, "filters": [16, 32, 64, 128],
                            "strides": [[1, 1, 1], [2, 2, 1], [2, 2, 2], [2, 2, 2]]}, (1, 1, 32, 32, 8)),
    "brain-extraction U-Net": ("unet", {"in_channels": 1, "out_channels": 2, "filters": [12, 24, 48, 96, 192],
                                        "strides": [1, 2, 2, 2, 2]}, (1, 1, 48, 48, 48)),
    "DeepLabv3+": ("deeplabv3plus", {"in_channels": 2, "out_channels": 3, "channels": [8, 16, 32, 64]},
                   (1, 2, 32, 32, 16)),
}


def twin(name: str) -> tuple[torch.nn.Module, torch.nn.Module, torch.Tensor]:
    arch, args, shape = NETWORKS[name]
    torch.manual_seed(0)
    plain = build_network(arch, args).eval()
    redirected = build_network(arch, args).eval()
    redirected.load_state_dict(plain.state_dict())
    return plain, redirected, torch.randn(shape)


def kernels_run(network: torch.nn.Module, x: torch.Tensor) -> set[str]:
    with torch.profiler.profile() as profile:
        network(x)
    return {event.key for event in profile.key_averages()}


@pytest.mark.parametrize("name", sorted(NETWORKS))
def test_every_convolution_takes_a_fast_kernel_and_the_logits_stay_the_same(name):
    plain, redirected, x = twin(name)
    convolutions = sum(type(m) in (torch.nn.Conv3d, torch.nn.ConvTranspose3d) for m in plain.modules())
    assert use_fast_cpu_kernels(redirected) == convolutions  # all of them: these upsample by kernel = stride
    with torch.inference_mode():
        # PyTorch's own choice sends the single-channel first convolution to its reference kernel
        assert "aten::slow_conv3d_forward" in kernels_run(plain, x)
        slow = {"aten::slow_conv3d_forward", "aten::slow_conv_transpose3d"}
        assert not slow & kernels_run(redirected, x)
        expected, got = plain(x), redirected(x)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4 * float(expected.abs().max()))


@pytest.mark.parametrize("name", sorted(NETWORKS))
def test_activations_stay_channels_last_from_the_first_convolution_to_the_logits(name):
    _, redirected, x = twin(name)
    use_fast_cpu_kernels(redirected)
    channel_first = []

    def record(module, inputs, output):
        for role, tensor in (("input", inputs[0]), ("output", output)):
            if (tensor is not x and tensor.shape[1] > 1
                    and not tensor.is_contiguous(memory_format=torch.channels_last_3d)):
                channel_first.append(f"{role} of {module.name}")

    for module_name, module in redirected.named_modules():
        if isinstance(module, (OneDNNConv3d, ChannelsLastInstanceNorm3d, MatmulConvTranspose3d)):
            module.name = module_name
            module.register_forward_hook(record)
    with torch.inference_mode():
        kernels = kernels_run(redirected, x)
    # after a one-channel input too: its weight must be restrided, which .contiguous() would not do.
    # DeepLabv3+'s image-pooling branch is broadcast before the concatenation: one reorder at 1/8 size
    assert channel_first == ([] if name != "DeepLabv3+" else ["input of aspp.project.conv"])
    assert "aten::native_batch_norm" not in kernels  # instance_norm's channel-first kernel


def test_the_channels_last_instance_norm_is_as_exact_as_pytorchs():
    """On a window whose second half is padding (a constant after the first convolution), where
    one-pass statistics (E[x^2] - E[x]^2, as in PyTorch's channels-last group norm) lose the variance."""
    torch.manual_seed(2)
    plain = torch.nn.InstanceNorm3d(16, affine=True)
    torch.nn.init.normal_(plain.weight)
    torch.nn.init.normal_(plain.bias)
    fast = torch.nn.InstanceNorm3d(16, affine=True)
    fast.load_state_dict(plain.state_dict())
    tracked = torch.nn.InstanceNorm3d(16, track_running_stats=True)  # eval normalises by running statistics
    use_fast_cpu_kernels(torch.nn.Sequential(fast, tracked))
    assert type(fast) is ChannelsLastInstanceNorm3d and type(tracked) is torch.nn.InstanceNorm3d
    x = torch.randn(2, 16, 40, 40, 40)
    x[..., 20:] = 0
    x += 5
    exact = torch.nn.functional.instance_norm(x.double(), weight=plain.weight.double(), bias=plain.bias.double())
    with torch.inference_mode():
        pytorch_error = (plain(x) - exact).abs().max()
        for layout in (torch.contiguous_format, torch.channels_last_3d):
            out = fast(x.to(memory_format=layout))
            assert out.is_contiguous(memory_format=layout)
            assert (out - exact).abs().max() <= 2 * pytorch_error
        one_pass = torch.nn.functional.group_norm(x.to(memory_format=torch.channels_last_3d), 16, plain.weight,
                                                  plain.bias)
        assert (one_pass - exact).abs().max() > 20 * pytorch_error  # why the norm is not that one-liner


def test_training_and_its_gradients_are_left_to_pytorch():
    plain, redirected, x = twin("demo U-Net")
    use_fast_cpu_kernels(redirected)
    for network in (plain, redirected):
        network.train()
        network(x).square().mean().backward()
    for (name, p), q in zip(plain.named_parameters(), redirected.parameters()):
        torch.testing.assert_close(q.grad, p.grad, msg=name)


def test_convolutions_it_cannot_redirect_are_left_alone():
    network = torch.nn.Sequential(torch.nn.Conv3d(1, 2, 3, padding="same"),
                                  torch.nn.Conv3d(2, 2, 3, padding=1, padding_mode="reflect"),
                                  torch.nn.Conv2d(2, 2, 3), torch.nn.Conv3d(2, 2, 1),
                                  torch.nn.ConvTranspose3d(2, 2, 3, stride=2),  # overlapping kernels
                                  torch.nn.ConvTranspose3d(2, 2, 2, stride=2, output_padding=1, dilation=2),
                                  torch.nn.ConvTranspose3d(2, 3, (2, 2, 1), stride=(2, 2, 1)))
    assert use_fast_cpu_kernels(network) == 2
    assert [type(m) for m in network] == [torch.nn.Conv3d, torch.nn.Conv3d, torch.nn.Conv2d, OneDNNConv3d,
                                          torch.nn.ConvTranspose3d, torch.nn.ConvTranspose3d, MatmulConvTranspose3d]


@pytest.mark.parametrize("bias", [True, False])
def test_a_block_upsampling_is_one_matrix_product_with_the_same_result(bias):
    torch.manual_seed(1)
    plain = torch.nn.ConvTranspose3d(6, 4, (2, 3, 1), stride=(2, 3, 1), bias=bias)
    fast = torch.nn.ConvTranspose3d(6, 4, (2, 3, 1), stride=(2, 3, 1), bias=bias)
    fast.load_state_dict(plain.state_dict())
    assert use_fast_cpu_kernels(fast) == 1
    x = torch.randn(2, 6, 5, 4, 3)
    with torch.inference_mode():
        torch.testing.assert_close(fast(x), plain(x))
        # an explicit output size goes to PyTorch's own kernel
        torch.testing.assert_close(fast(x, output_size=[10, 12, 3]), plain(x, output_size=[10, 12, 3]))


def test_the_cpu_engine_redirects_its_network():
    plain, _, x = twin("demo U-Net")
    engine = InferenceEngine(plain, InferenceSettings(patch_size=(32, 32, 8)), torch.device("cpu"))
    assert any(isinstance(m, OneDNNConv3d) for m in engine.network.modules())
    probabilities = engine.predict(np.asarray(x[0]))
    assert probabilities.shape == (5, 32, 32, 8)
