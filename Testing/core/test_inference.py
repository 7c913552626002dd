import numpy as np
import pytest
import torch
from monai.inferers import sliding_window_inference

from MedSegAILib.bundle.card import InferenceSettings
from MedSegAILib.errors import Cancelled, ResourceError
from MedSegAILib.inference import PRECISIONS, InferenceEngine, autocast_dtype, select_device
from MedSegAILib.sliding_window import count_windows, window_starts
from MedSegAILib.progress import CancelToken, ProgressReporter


@pytest.mark.parametrize("size, patch, overlap", [
    ((100, 64, 20), (64, 64, 32), 0.25), ((130, 97, 33), (48, 32, 16), 0.5), ((31, 31, 31), (32, 32, 32), 0.25),
    ((200, 10, 64), (64, 64, 64), 0.625)])
def test_window_count_matches_monai(size, patch, overlap):
    calls = []

    def predictor(x):
        calls.append(x.shape[0])
        return x

    sliding_window_inference(torch.zeros(1, 1, *size), patch, 1, predictor, overlap=overlap)
    assert count_windows(size, patch, overlap) == sum(calls)


def test_window_starts_cover_the_axis():
    starts = window_starts(100, 64, 0.25)
    assert starts[0] == 0 and starts[-1] + 64 == 100


class Constant(torch.nn.Module):
    def forward(self, x):
        out = torch.zeros(x.shape[0], 2, *x.shape[2:])
        out[:, 1] = x[:, 0]
        return out


def test_engine_reports_progress_and_softmax_probabilities():
    events = []
    engine = InferenceEngine(Constant(), InferenceSettings((16, 16, 16), 0.25), torch.device("cpu"))
    image = np.zeros((1, 40, 30, 20), np.float32)
    image[0, :20] = 5.0
    prob = engine.predict(image, ProgressReporter(events.append))
    assert prob.shape == (2, 40, 30, 20)
    np.testing.assert_allclose(prob.sum(0), 1.0, atol=1e-5)
    assert (prob[1, :10] > 0.99).all() and np.allclose(prob[1, 30:], 0.5)
    assert len(events) == engine.total_windows(image.shape[1:])


def test_flip_tta_averages_flipped_passes():
    class LeftBiased(torch.nn.Module):  # votes for class 1 on the first half of x only
        def forward(self, x):
            out = torch.zeros(x.shape[0], 2, *x.shape[2:])
            out[:, 1, : x.shape[2] // 2] = 10.0
            return out

    settings = InferenceSettings((16, 16, 16), 0.0, "constant", tta_flips=((0,),))
    image = np.zeros((1, 16, 16, 16), np.float32)
    plain = InferenceEngine(LeftBiased(), settings, torch.device("cpu")).predict(image)
    tta = InferenceEngine(LeftBiased(), settings, torch.device("cpu"), use_tta=True).predict(image)
    assert plain[1, 0, 0, 0] > 0.99 and np.isclose(plain[1, -1, 0, 0], 0.5)
    np.testing.assert_allclose(tta[1], 0.5 * (plain[1] + plain[1, ::-1]), atol=1e-6)


def test_cancel_stops_between_windows():
    token = CancelToken()
    seen = []

    def on_progress(event):
        seen.append(event)
        if len(seen) == 2:
            token.cancel()

    engine = InferenceEngine(Constant(), InferenceSettings((8, 8, 8), 0.0), torch.device("cpu"))
    with pytest.raises(Cancelled):
        engine.predict(np.zeros((1, 32, 32, 32), np.float32), ProgressReporter(on_progress, token))
    assert len(seen) == 2  # no window ran after the cancel


def test_device_selection():
    assert select_device("auto").type in ("cpu", "cuda", "mps")
    assert select_device("cpu").type == "cpu"
    if not torch.cuda.is_available():
        with pytest.raises(ResourceError, match="no CUDA device"):
            select_device("cuda")
    with pytest.raises(ResourceError, match="unknown device"):
        select_device("tpu")


def test_precision_picks_the_autocast_dtype():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert autocast_dtype("auto", cpu) is None and autocast_dtype("auto", cuda) is torch.float16
    assert autocast_dtype("fp32", cuda) is None
    assert autocast_dtype("bf16", cpu) is autocast_dtype("bf16", cuda) is torch.bfloat16
    with pytest.raises(ValueError, match="precision"):
        autocast_dtype("fp8", cpu)


def test_bf16_runs_the_network_under_bfloat16_autocast():
    seen = []

    class Probe(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv3d(1, 2, 1)

        def forward(self, x):
            y = self.conv(x)
            seen.append(y.dtype)
            return y

    probe, settings = Probe(), InferenceSettings((8, 8, 8), 0.0)
    image = np.random.default_rng(0).standard_normal((1, 8, 8, 8)).astype(np.float32)
    plain = InferenceEngine(probe, settings, torch.device("cpu")).predict(image)
    half = InferenceEngine(probe, settings, torch.device("cpu"), precision="bf16").predict(image)
    assert seen == [torch.float32, torch.bfloat16] and half.dtype == np.float32
    np.testing.assert_allclose(half, plain, atol=2e-2)


def test_cli_takes_every_precision_and_no_other():
    from MedSegAILib.cli import build_parser

    base = ["segment", "ct.nrrd", "-m", "model", "-o", "out"]
    assert [build_parser().parse_args(base + ["--precision", p]).precision for p in PRECISIONS] == list(PRECISIONS)
    assert build_parser().parse_args(base).precision == "auto"
    with pytest.raises(SystemExit):
        build_parser().parse_args(base + ["--precision", "fp16"])


def test_eta_is_estimated_during_inference():
    clock = iter(np.arange(0.0, 100.0, 1.0))
    events = []
    reporter = ProgressReporter(events.append, clock=lambda: next(clock))
    reporter.stage("inference")
    reporter.update(0.25)
    reporter.update(0.5)
    assert events[-1].eta_s is not None and 0 < events[-1].eta_s < 10
    assert events[-1].fraction > events[-2].fraction


def test_loaded_models_give_each_case_the_network_the_first_one_built(bundle_factory):
    # a U-Net with convolutions, transposed convolutions and instance norms: the kernels the CPU
    # engine swaps in place must leave a reused network computing what a fresh one computes
    from MedSegAILib.pipeline import SegmentationOptions, segment
    from MedSegAILib.runtime import LoadedModels
    from testing_support import asymmetric_structure, volume_on

    bundle = bundle_factory(network={"name": "unet", "args": {"in_channels": 1, "out_channels": 2,
                                                              "filters": [4, 8, 8], "strides": [1, 2, 2]}},
                            preprocessing={"target_spacing": None, "normalization": {"type": "percentile_zscore"}},
                            inference={"patch_size": [16, 16, 16], "overlap": 0.25})
    vol = volume_on("oblique")
    vol.array[:] = np.where(asymmetric_structure(vol), 100, -1000)
    options = SegmentationOptions(device="cpu", threads=1, allow_empty=True)
    fresh = segment([vol], bundle, options).labels.array
    models = LoadedModels()
    reused = [segment([vol], bundle, options, models=models).labels.array for _ in range(2)]
    assert len(models) == 1
    assert 0 < fresh.mean() < 1  # random weights, both classes present: a comparison that can fail
    for labels in reused:
        np.testing.assert_array_equal(labels, fresh)


FLUSH_PROBE = """
import sys, torch
from MedSegAILib.bundle import Bundle
from MedSegAILib.inference import torch_engine
from MedSegAILib.pipeline import SegmentationOptions
bundle = Bundle.open(sys.argv[1])
engine = torch_engine(bundle, bundle.card, SegmentationOptions(device="cpu", threads=2), 0, [])
torch.set_num_threads(2)
tiny = torch.full((4_000_000,), 1e-30) * torch.full((4_000_000,), 1e-10)  # 1e-40 is a denormal float32
print(float((tiny == 0).float().mean()))
"""


def test_the_torch_engine_flushes_denormals_on_every_thread(bundle_factory):
    # a fresh process, as the CLI is: the setting must reach the OpenMP workers too, which copy it
    # when they start (each thread computes part of the product: a main-thread-only flush gives 0.5)
    import subprocess
    import sys

    bundle = bundle_factory()
    run = subprocess.run([sys.executable, "-c", FLUSH_PROBE, str(bundle.path)], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert float(run.stdout.strip().splitlines()[-1]) == 1.0
