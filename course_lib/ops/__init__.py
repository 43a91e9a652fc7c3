"""Layer 1: ``torchvision.ops`` from scratch, file for file (``boxes``, ``roi_pool``, ``roi_align``,
``poolers``, ``feature_pyramid_network``). Each agrees with torchvision numerically; the tests in
``tests/ops/`` include cases ported from torchvision's own ``test/test_ops.py``.
"""
