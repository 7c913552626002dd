"""Deep supervision: heads on the U-Net's decoder stages in training only, checkpointed and resumed,
never in the exported network."""

from __future__ import annotations

import pytest
import torch

from MedSegAILib.networks import build_network
from medsegai_training.checkpoint import load_checkpoint
from medsegai_training.deep_supervision import DeepSupervision, deep_supervision_loss, level_weights
from medsegai_training.losses import build_loss
from medsegai_training.trainer import TrainingError
from training_support import TINY_NETWORK, make_trainer, tiny_case, tiny_config


def unet(**changes):
    args = {"in_channels": 1, "out_channels": 4, "filters": [4, 8, 16, 32], "strides": [1, 2, 2, [2, 2, 1]], **changes}
    return build_network("unet", args)


@pytest.mark.parametrize("res_block", [False, True])  # MedSegAI's U-Net, and MONAI's DynUNet for residual blocks
def test_heads_give_each_supervised_stage_its_resolution_and_leave_the_network_alone(res_block):
    network = unet(res_block=res_block)
    keys = set(network.state_dict())
    x = torch.randn(2, 1, 32, 24, 16)
    outputs = DeepSupervision(network, levels=2)(x)
    assert [tuple(o.shape) for o in outputs] == [(2, 4, 32, 24, 16), (2, 4, 16, 12, 8), (2, 4, 8, 6, 4)]
    assert set(network.state_dict()) == keys  # the heads are the wrapper's, not the network's
    torch.testing.assert_close(outputs[0], network(x))  # same weights, same output; no hook left behind
    assert network(x).shape == (2, 4, 32, 24, 16)


def test_levels_and_networks_are_checked():
    with pytest.raises(ValueError, match="levels must be 1 to 2"):
        DeepSupervision(unet(), levels=3)
    deeplab = build_network("deeplabv3plus", {"in_channels": 1, "out_channels": 3, "channels": [8, 16, 32, 64]})
    with pytest.raises(ValueError, match="needs a U-Net"):
        DeepSupervision(deeplab, levels=1)


def test_weights_halve_per_stage_and_the_loss_compares_each_output_with_labels_at_its_size():
    assert level_weights(2) == pytest.approx([4 / 7, 2 / 7, 1 / 7])
    loss_fn = build_loss("dice_ce")
    labels = torch.zeros(1, 1, 8, 8, 8, dtype=torch.long)
    labels[..., 4:, :, :] = 1  # half of the volume, along x
    perfect = torch.where(labels.bool(), 1.0, -1.0).float() * 20
    full = torch.cat([-perfect, perfect], dim=1)  # logits of the right class
    half = full[..., ::2, ::2, ::2]
    wrong = -half
    good = deep_supervision_loss(loss_fn, [full, half], labels)
    assert good.item() == pytest.approx(0.0, abs=1e-3)
    bad = deep_supervision_loss(loss_fn, [full, wrong], labels)
    assert bad.item() == pytest.approx(level_weights(1)[1] * loss_fn(wrong, labels[..., ::2, ::2, ::2]).item())


def test_training_with_deep_supervision_checkpoints_heads_resumes_and_exports_the_plain_network(tmp_path):
    case = tiny_case(0)
    config = tiny_config(iterations=8, checkpoint_every=4, deep_supervision=1, tensorboard=False)
    make_trainer(case, tmp_path, config).run(stop_at=4)
    saved = load_checkpoint(tmp_path / "checkpoints" / "checkpoint-0000004.pt")
    assert set(saved["deep_supervision_heads"]) == {"0.weight", "0.bias"}
    assert saved["config"]["deep_supervision"] == 1
    result = make_trainer(case, tmp_path, config).run(resume=True)
    assert result.iterations == 8 and result.resumed_from == 4
    plain = build_network(TINY_NETWORK["name"], TINY_NETWORK["args"])
    plain.load_state_dict(result.network.state_dict())  # strict: no head in the exported weights
    final = load_checkpoint(tmp_path / "checkpoints" / "checkpoint-0000008.pt")
    assert not torch.equal(final["deep_supervision_heads"]["0.weight"], saved["deep_supervision_heads"]["0.weight"])


def test_deep_supervision_of_a_network_without_decoder_stages_is_a_clear_error(tmp_path):
    case = tiny_case(0)
    trainer = make_trainer(case, tmp_path, tiny_config(iterations=2, deep_supervision=2))
    with pytest.raises(TrainingError, match="levels must be 1 to 1"):
        trainer.run()
