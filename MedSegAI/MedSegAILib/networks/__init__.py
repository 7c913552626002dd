"""Networks built from model cards. Importing this package registers every built-in network."""

from . import baseline, deeplab, unet  # noqa: F401  (registration side effects)
from .baseline import IntensityWindowClassifier
from .deeplab import DeepLabV3Plus3D
from .registry import build_network, network_names, register_network
from .unet import SliceWise2D

__all__ = ["DeepLabV3Plus3D", "IntensityWindowClassifier", "SliceWise2D", "build_network", "network_names",
           "register_network"]
