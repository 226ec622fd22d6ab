"""Encoder sizes shared by the tests (one definition each)."""
# full 12 x 5000 input, two temporal blocks: the fastest encoder on the real path
TINY = dict(kernel_sizes=(5, 3), filters=(4, 8), pools=(8, 8), spatial_filters=8, feature_dim=16)
# full 12 x 5000 input, four temporal blocks: big enough to learn the synthetic phenotype
SMALL = dict(kernel_sizes=(5, 5, 3, 3), filters=(8, 8, 16, 16), pools=(4, 4, 4, 4),
             spatial_filters=16, feature_dim=32)
# 12 x 64 input: unit tests of MoCo and copies
SHORT = dict(kernel_sizes=(3, 3), filters=(4, 4), pools=(2, 2), spatial_filters=8,
             feature_dim=16, num_samples=64)
