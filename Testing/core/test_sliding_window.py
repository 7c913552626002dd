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


@pytest.mark.parametrize("size, patch, overlap, blending, batch, padding", [
    ((37, 29, 21), (16, 16, 8), 0.25, "gaussian", 1, "constant"),
    ((37, 29, 21), (16, 12, 8), 0.5, "constant", 3, "constant"),
    ((10, 40, 7), (16, 16, 8), 0.25, "gaussian", 2, "constant"),  # sides shorter than the patch: padded, cropped
    ((10, 40, 7), (16, 16, 8), 0.25, "gaussian", 2, "replicate"),
    ((5, 11, 3), (16, 16, 8), 0.25, "constant", 1, "replicate"),  # every side short
    ((16, 16, 8), (16, 16, 8), 0.25, "gaussian", 1, "constant"),    # one window
])
def test_blended_output_matches_monai(size, patch, overlap, blending, batch, padding):
    net = _network()
    image = torch.randn(1, 2, *size, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        ours = sliding_window_inference(image, patch, net, overlap=overlap, blending=blending, batch_size=batch,
                                        padding=padding)
        theirs = monai_sliding_window(image, patch, batch, net, overlap=overlap, mode=blending, padding_mode=padding)
    assert ours.shape == theirs.shape == (1, 3, *size)
    torch.testing.assert_close(ours, torch.as_tensor(theirs), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("patch", [(16, 16, 8), (15, 9, 1), (7,)])
def test_gaussian_weights_match_monai(patch):
    ours = torch.from_numpy(importance_map(patch))
    theirs = compute_importance_map(patch, mode="gaussian", sigma_scale=0.125, device="cpu")
    torch.testing.assert_close(ours, theirs)
    assert float(ours.min()) >= 1e-3


@pytest.mark.parametrize("size, patch, overlap, blending, batch, padding", [
    ((37, 29, 21), (16, 16, 8), 0.25, "gaussian", 2, "constant"),
    ((10, 40, 7), (16, 16, 8), 0.5, "constant", 1, "constant"),
    ((10, 40, 7), (16, 16, 8), 0.5, "gaussian", 1, "replicate"),
])
def test_numpy_images_blend_exactly_as_torch_tensors(size, patch, overlap, blending, batch, padding):
    """ONNX Runtime's path (numpy in, numpy out) puts the same windows together as PyTorch's."""
    net = _network()
    image = torch.randn(1, 2, *size, generator=torch.Generator().manual_seed(2))

    def numpy_predictor(x: np.ndarray) -> np.ndarray:
        assert isinstance(x, np.ndarray) and x.flags.c_contiguous
        with torch.inference_mode():
            return net(torch.from_numpy(x)).numpy()

    with torch.inference_mode():
        expected = sliding_window_inference(image, patch, net, overlap=overlap, blending=blending, batch_size=batch,
                                            padding=padding)
    actual = sliding_window_inference(image.numpy(), patch, numpy_predictor, overlap=overlap, blending=blending,
                                      batch_size=batch, padding=padding)
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


@pytest.mark.parametrize("kind", [np.asarray, torch.as_tensor])
def test_replicate_padding_shows_the_window_the_border_continued(kind):
    """A window larger than the image sees the border voxels repeated, not zeros."""
    image = kind(np.arange(1, 4, dtype=np.float32).reshape(1, 1, 3, 1, 1))  # 1, 2, 3 along the first axis
    seen = []

    def predictor(x):
        seen.append(np.asarray(x)[0, 0, :, 0, 0].tolist())
        return x

    out = sliding_window_inference(image, (7, 1, 1), predictor, padding="replicate")
    assert seen == [[1.0, 1.0, 1.0, 2.0, 3.0, 3.0, 3.0]]
    np.testing.assert_allclose(np.asarray(out)[0, 0, :, 0, 0], [1.0, 2.0, 3.0])  # padding cropped off again
    sliding_window_inference(image, (7, 1, 1), predictor)
    assert seen[-1] == [0.0, 0.0, 1.0, 2.0, 3.0, 0.0, 0.0]


def test_an_unknown_padding_is_refused():
    with pytest.raises(ValueError, match="padding must be one of"):
        sliding_window_inference(np.zeros((1, 1, 4, 4, 4), np.float32), (8, 8, 8), lambda x: x, padding="reflect")
