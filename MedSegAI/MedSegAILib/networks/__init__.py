"""Networks built from model cards. Importing this package registers every built-in network; those
built on MONAI blocks (DeepLabv3+, Attention U-Net, V-Net) are imported on first use."""

from . import baseline, unet  # noqa: F401  (registration side effects)
from .baseline import IntensityWindowClassifier
from .registry import build_network, network_names, register_lazily, register_network
from .unet import SliceWise2D, UNet

register_lazily("deeplabv3plus", f"{__name__}.deeplab")
register_lazily("attention_unet", f"{__name__}.monai_unets")
register_lazily("vnet", f"{__name__}.monai_unets")

__all__ = ["IntensityWindowClassifier", "SliceWise2D", "UNet", "build_network", "network_names", "register_network"]
