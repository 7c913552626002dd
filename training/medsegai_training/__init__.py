"""Training for MedSegAI models.

Everything a model sees is produced by the core library (``MedSegAILib``): preprocessing is
``MedSegAILib.preprocessing.prepare_case`` -- the same code path as inference -- networks come from
``MedSegAILib.networks.build_network`` and models leave as bundles written by
``MedSegAILib.bundle.write_bundle``. This package adds only what training needs on top:

* :mod:`.dataset`       MSD / nnU-Net data set folders and the data set check
* :mod:`.planning`      fingerprint -> training plan (JSON), nnU-Net style auto-configuration
* :mod:`.metrics`       Dice, HD95, ASSD, sensitivity, specificity, volume error per label
* :mod:`.cli`           ``medsegai-train check|plan|train|export|evaluate``
* :mod:`.data`          cases (image + label map) and label mapping to model values
* :mod:`.sampling`      random patches with foreground oversampling
* :mod:`.augmentation`  light intensity and in-plane affine augmentation
* :mod:`.schedule`      AdamW with linear warm-up and cosine decay
* :mod:`.checkpoint`    periodic checkpoints and resuming
* :mod:`.seeding`       fixed seeds and saved random states
* :mod:`.trainer`       the training loop
* :mod:`.evaluation`    Dice through the real segmentation pipeline
* :mod:`.export`        bundle export with a complete model card
* :mod:`.ct_chest_demo` the recipe of the shipped CT chest demo model
"""

__version__ = "0.1.0"
