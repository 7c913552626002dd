"""MedSegAI core: deep-learning segmentation of CT and MRI volumes, geometry-exact.

Plain Python on torch, MONAI, SimpleITK, numpy and VTK; it never imports Slicer or Qt, so the
same code serves the CLI, the Slicer module (through a child process) and training.
"""

__version__ = "0.1.0"
