"""Mask R-CNN, Step by Step: the library every course notebook imports.

Each module covers one stage or one job and says which notebook teaches it.
"""

__version__ = "0.1.0"
