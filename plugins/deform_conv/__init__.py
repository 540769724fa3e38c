"""Deformable convolution DCNv1/DCNv2: spec, functional op and modules."""

from .functional import deform_conv2d, deform_conv2d_reference
from .module import DeformConv2d, ExternalOffsetDeformConv2d, ModulatedDeformConv2d
from .spec import DEFORM_CONV2D

__all__ = ["DEFORM_CONV2D", "DeformConv2d", "ExternalOffsetDeformConv2d", "ModulatedDeformConv2d",
           "deform_conv2d", "deform_conv2d_reference"]
