"""MedSegAI's sliding window puts the same windows, weights and padding together as MONAI's."""

import numpy as np
import pytest
import torch
from monai.data.utils import compute_importance_map
from monai.inferers import sliding_window_inference as monai_sliding_window

from MedSegAILib.sliding_window import importance_map, sliding_window_inference


def _network() -> torch.nn.Module:
    torch.manual_seed(0)
    # position-dependent output (no padding symmetry to hide a misplaced window)
    return torch.nn.Sequential(torch.nn.Conv3d(2, 3, 3, padding=1), torch.nn.Tanh()).eval()


@pytest.mark.parametrize("size, patch, overlap, blending, batch", [
    ((37, 29, 21), (16, 16, 8), 0.25, "gaussian", 1),
    ((37, 29, 21), (16, 12, 8), 0.5, "constant", 3),
    ((10, 40, 7), (16, 16, 8), 0.25, "gaussian", 2),   # sides shorter than the patch: padded, then cropped
    ((16, 16, 8), (16, 16, 8), 0.25, "gaussian", 1),    # one window
])
def test_blended_output_matches_monai(size, patch, overlap, blending, batch):
    net = _network()
    image = torch.randn(1, 2, *size, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        ours = sliding_window_inference(image, patch, net, overlap=overlap, blending=blending, batch_size=batch)
        theirs = monai_sliding_window(image, patch, batch, net, overlap=overlap, mode=blending)
    assert ours.shape == theirs.shape == (1, 3, *size)
    torch.testing.assert_close(ours, torch.as_tensor(theirs), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("patch", [(16, 16, 8), (15, 9, 1), (7,)])
def test_gaussian_weights_match_monai(patch):
    ours = torch.from_numpy(importance_map(patch))
    theirs = compute_importance_map(patch, mode="gaussian", sigma_scale=0.125, device="cpu")
    torch.testing.assert_close(ours, theirs)
    assert float(ours.min()) >= 1e-3


@pytest.mark.parametrize("size, patch, overlap, blending, batch", [
    ((37, 29, 21), (16, 16, 8), 0.25, "gaussian", 2),
    ((10, 40, 7), (16, 16, 8), 0.5, "constant", 1),
])
def test_numpy_images_blend_exactly_as_torch_tensors(size, patch, overlap, blending, batch):
    """ONNX Runtime's path (numpy in, numpy out) puts the same windows together as PyTorch's."""
    net = _network()
    image = torch.randn(1, 2, *size, generator=torch.Generator().manual_seed(2))

    def numpy_predictor(x: np.ndarray) -> np.ndarray:
        assert isinstance(x, np.ndarray) and x.flags.c_contiguous
        with torch.inference_mode():
            return net(torch.from_numpy(x)).numpy()

    with torch.inference_mode():
        expected = sliding_window_inference(image, patch, net, overlap=overlap, blending=blending, batch_size=batch)
    actual = sliding_window_inference(image.numpy(), patch, numpy_predictor, overlap=overlap, blending=blending,
                                      batch_size=batch)
    assert isinstance(actual, np.ndarray) and actual.dtype == np.float32
    np.testing.assert_allclose(actual, expected.numpy(), rtol=1e-5, atol=1e-6)


def test_each_window_is_predicted_once_and_progress_can_count_them():
    seen = []

    def predictor(x):
        seen.append(x.shape[0])
        return x[:, :1]

    out = sliding_window_inference(torch.ones(1, 1, 30, 30, 10), (16, 16, 8), predictor, overlap=0.25, batch_size=4)
    assert sum(seen) == 3 * 3 * 2 and max(seen) == 4
    np.testing.assert_allclose(out.numpy(), 1.0, rtol=1e-6)  # constant input: any blend of ones is one


def test_a_wrongly_shaped_image_is_refused():
    with pytest.raises(ValueError, match="spatial axes"):
        sliding_window_inference(torch.zeros(1, 1, 8, 8), (4, 4, 4), lambda x: x)
