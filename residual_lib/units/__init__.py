"""Residual units: their names (`EMB`, `L{l}.H{h}`, `L{l}.MLP`), the in-memory `UnitSet`, the adapter interface
every model implements, and the decomposition math that distributes the final LayerNorm and projection over them.

Layer 1: imports only the base modules (files, paths, device, version).
"""
