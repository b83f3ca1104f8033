"""Section 3 of the paper: PCA of units, intrinsic dimension (linear and TwoNN), spectral similarity of heads
across datasets, TextSpan / OMP / SOMP text decompositions and their agreement, linear probes, the images at
the ends of a principal component.

Layer 4: reads units (from memory or the store) and never trains a model.
"""
