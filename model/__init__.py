"""StoryGen on storyloom shards: training, story generation and evaluation.

- ``config``: typed, validated settings (YAML file + ``--set section.key=value``), saved in checkpoints
- ``data``: story shards (any fsspec URL) -> windows of up to k context frames plus a target
- ``storygen``: SD-1.5 parts and the image cross-attention processors; StoryGen's loss
- ``weights``: which UNet parameters are StoryGen's, their weights file, a run's checkpoint list
- ``train``: the accelerate loop (stages 1 and 2); ``checkpoint``: save, resume, read
- ``generate``: frame-by-frame generation with three-way guidance; ``evaluate``: CLIP-T, CLIP-I, FID
- ``cli``: ``storyloom train | generate | evaluate``; ``testing``: random-weight models

Importing the package or ``model.cli`` loads no torch; diffusers, transformers and torchvision are
imported inside the functions that need them, after ``pipeline.models.torch_compat.ensure_torchvision_importable``.
"""
