"""Make torchvision importable next to a CPU build of torch whose op registry lacks its ops.

The only torchvision that accepts torch 2.13.0 is 0.28.0, and on PyPI that is a CUDA build. With
the CPU torch, ``import torchvision`` fails with ``operator torchvision::nms does not exist``:
its meta registrations refer to op schemas that its compiled library would have defined. That
breaks open_clip, timm, transformers' vision models and diffusers, which all import torchvision.

:func:`ensure_torchvision_importable` defines the two schemas those registrations expect, and
only when they are missing, so it is a no-op wherever torchvision's ops load normally (a CUDA
machine, a matching CPU build). The compiled ops themselves (``torchvision.ops.nms``,
``roi_align``, ``torchvision.io`` decoders) stay unavailable; storyloom needs none of them.

Call it before the first import of torchvision or of a library that imports it.
"""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)

_SCHEMAS = {
    "nms": "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms": "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
}
_library = None  # kept alive: dropping the Library object would unregister the schemas


def ensure_torchvision_importable() -> None:
    global _library
    import torch

    missing = [name for name in _SCHEMAS if not hasattr(torch.ops.torchvision, name)]
    if not missing or _library is not None:
        return
    try:  # torchvision's own library may already have loaded and defined them
        import importlib.util

        if importlib.util.find_spec("torchvision") is None:
            return
    except (ImportError, ValueError):
        return
    _library = torch.library.Library("torchvision", "DEF")
    for name in missing:
        _library.define(_SCHEMAS[name])
    log.debug("defined torchvision op schemas %s for a CPU torch build", missing)
