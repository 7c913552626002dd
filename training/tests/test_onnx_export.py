"""ONNX export of a bundle's network, checked against PyTorch with ONNX Runtime."""

from __future__ import annotations

import json

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
