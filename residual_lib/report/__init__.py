"""What the pages show, shared across pages: the figure style and figure functions, the head atlas, and our
numbers saved in the paper's format beside the paper's.

Layer 6: above the math (it plots and tabulates analysis and alignment results), below the toy world, the claims
and the experiments.
"""
