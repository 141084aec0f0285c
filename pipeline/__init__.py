"""storyloom pipeline: plain, testable stages that turn sources into story datasets.

Nothing in this package imports Prefect; `flows/` wires these stages into flows.
Heavy libraries (torch, open_clip, transformers, cv2, av) are imported inside the
stages that need them so that `import pipeline` stays fast.
"""

__version__ = "0.1.0"
