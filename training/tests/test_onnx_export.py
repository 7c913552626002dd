"""ONNX export of a bundle's network, checked against PyTorch with ONNX Runtime."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from MedSegAILib.bundle import Bundle, write_bundle  # noqa: E402
from MedSegAILib.networks import build_network  # noqa: E402
from medsegai_training.onnx_export import check_onnx, export_onnx, main  # noqa: E402
from training_support import TINY_CARD, TINY_NETWORK  # noqa: E402


@pytest.fixture
def tiny_bundle(tmp_path):
    network = build_network(TINY_NETWORK["name"], TINY_NETWORK["args"])
    return write_bundle(tmp_path / "bundle", TINY_CARD, {"weights.safetensors": network.state_dict()})


def test_export_matches_pytorch_on_other_window_sizes(tiny_bundle, tmp_path):
    bundle = Bundle.open(tiny_bundle)
    path = export_onnx(bundle, tmp_path / "tiny.onnx")
    for spatial in [None, (32, 24, 16)]:  # the card's patch, then another size: dynamic axes
        check = check_onnx(bundle, path, spatial, threads=1)
        assert check.shape[2:] == tuple(spatial or TINY_CARD["inference"]["patch_size"])
        assert check.max_abs_diff < 1e-4 and check.argmax_agreement == 1.0


def test_main_writes_the_file_and_reports_the_check(tiny_bundle, tmp_path, capsys):
    out = tmp_path / "sub" / "model.onnx"
    assert main([str(tiny_bundle), str(out), "--shape", "16", "16", "16"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert out.is_file() and report["passed"] and report["shape"] == [1, 1, 16, 16, 16]
    assert main([str(tiny_bundle), str(out), "--atol", "-1"]) == 1  # an impossible tolerance fails


GRAPH_CARD = {**TINY_CARD, "files": {**TINY_CARD["files"], "onnx_graph": "network.onnx"},
              "inference": {**TINY_CARD["inference"], "cpu_runtime": "onnxruntime"}}


def test_a_bundle_graph_reads_every_weight_from_the_safetensors_file(tmp_path):
    """The exporter names tensors that the U-Net registers twice by either name; matching by value
    still finds every one of them in the weights file, so the graph holds no weight of its own."""
    from MedSegAILib.bundle import weights_bytes
    from medsegai_training.onnx_export import input_shape_of, onnx_bytes, with_external_weights

    network = build_network(TINY_NETWORK["name"], TINY_NETWORK["args"]).eval()
    weights = weights_bytes(network.state_dict())
    graph, inside = with_external_weights(onnx_bytes(network, input_shape_of(TINY_CARD)), weights,
                                          "weights.safetensors")
    assert inside == 0
    assert len(graph) < len(onnx_bytes(network, input_shape_of(TINY_CARD))) - 0.9 * len(weights)


def test_export_bundle_writes_the_graph_the_card_names_and_both_runtimes_agree(tmp_path):
    from MedSegAILib.onnx_inference import open_session
    from MedSegAILib.pipeline import SegmentationOptions, segment
    from medsegai_training.export import export_bundle
    from training_support import synthetic_case

    network = build_network(TINY_NETWORK["name"], TINY_NETWORK["args"])
    bundle = export_bundle(tmp_path / "with-graph", GRAPH_CARD, network)
    assert set(bundle.members) == {"model.json", "weights.safetensors", "network.onnx", "SHA256SUMS"}
    check = check_onnx(bundle, open_session(bundle, bundle.card, threads=1), (32, 24, 16))
    assert check.max_abs_diff < 1e-4 and check.argmax_agreement == 1.0
    ct, _ = synthetic_case()
    labels = {runtime: segment([ct], bundle, SegmentationOptions(device="cpu", runtime=runtime, threads=1,
                                                                 allow_empty=True)).labels.array
              for runtime in ("onnxruntime", "torch")}
    assert np.mean(labels["onnxruntime"] == labels["torch"]) > 0.9999


def test_into_bundle_adds_the_graph_and_keeps_the_weights_byte_for_byte(tiny_bundle, capsys):
    before = Bundle.open(tiny_bundle)
    assert main([str(tiny_bundle), "--into-bundle", "--cpu-runtime", "onnxruntime"]) == 0
    report = json.loads(capsys.readouterr().out)
    after = Bundle.open(tiny_bundle)
    assert report["passed"] and report["onnx"].endswith("network.onnx")
    assert after.members["weights.safetensors"] == before.members["weights.safetensors"]
    assert after.card.onnx_graph_file == "network.onnx" and after.card.inference.cpu_runtime == "onnxruntime"
    assert not any(p.name.startswith(".") for p in tiny_bundle.parent.iterdir())  # no staging folder left


def test_main_takes_a_file_or_into_bundle_not_both(tiny_bundle, tmp_path):
    for argv in ([str(tiny_bundle)], [str(tiny_bundle), str(tmp_path / "x.onnx"), "--into-bundle"],
                 [str(tiny_bundle), str(tmp_path / "x.onnx"), "--cpu-runtime", "onnxruntime"]):
        with pytest.raises(SystemExit) as info:
            main(argv)
        assert info.value.code == 2
