"""Layer 5: one module per notebook (``nbNN_<name>``) with that notebook's figures and analysis helpers,
and ``draw``, the drawing helpers they share. matplotlib is imported in this layer only.
"""
