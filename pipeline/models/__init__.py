"""Models in the pipeline: loading (once per process, from a hub id or a local folder), CLIP
filters and scores, captions, and the torchvision import fix for CPU torch builds.

Nothing here imports torch or a model library at import time."""
