"""One figure style for the whole book."""

import matplotlib as mpl
import matplotlib.pyplot as plt

# Ours vs the paper's: the same two colours on every page.
OURS = "#1f5fa8"
PAPER = "#b5651d"
CMAP_SEQ = "viridis"
CMAP_DIV = "RdBu_r"


def apply() -> None:
    """Set the shared matplotlib style (call once at the top of a notebook)."""
    plt.style.use("seaborn-v0_8-whitegrid")
    mpl.rcParams.update({
        "figure.dpi": 110,
        "savefig.dpi": 150,
        "figure.figsize": (7.0, 4.0),
        "axes.titlesize": 11,
        "axes.labelsize": 10,
        "legend.fontsize": 9,
        "axes.spines.top": False,
        "axes.spines.right": False,
    })


def paper_label(text: str) -> str:
    """Label for anything that shows the paper's numbers rather than this build's."""
    return f"{text} (paper)"
