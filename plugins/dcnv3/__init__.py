"""DCNv3 / DCNv4 (InternImage, FlashInternImage): one spec and core op, functional forms, modules."""

from .functional import dcnv3, dcnv3_reference, dcnv4, split_offset_mask
from .module import DCNv3, DCNv4
from .spec import DCNV3, num_points

__all__ = ["DCNV3", "DCNv3", "DCNv4", "dcnv3", "dcnv3_reference", "dcnv4", "num_points",
           "split_offset_mask"]
