"""The pursuit figures render from the tables the library returns (shapes, labels, the paper's panel)."""

import numpy as np
import pandas as pd

from residual_lib.paper.reference import reference
from residual_lib.report.plots_pursuit import plot_agreement, plot_equivalence, plot_probe_skill


def test_agreement_figure_has_ours_and_the_papers_panel():
    ours = pd.DataFrame({"layer": [2, 2, 3, 3], "head": [0, 1, 0, 1], "z": [0.5, -1.5, 2.0, 0.1]})
    fig = plot_agreement(ours, reference("fig3_agreement"), pc=2, model_label="m")
    titles = [ax.get_title() for ax in fig.axes]
    assert "|Z|, TextSpan vs OMP on PC2: m" in titles and "|Z|, OpenCLIP-L, PC2 (paper)" in titles
    assert fig.axes[0].images[0].get_array().shape == (2, 2)  # heads x layers, |Z| plotted
    assert fig.axes[0].images[0].get_array().min() >= 0


def test_probe_and_equivalence_figures():
    skills = pd.DataFrame(np.eye(2), index=["L0.H0", "L0.H1"], columns=["colour", "shape"])
    fig = plot_probe_skill(skills, pd.Series({"L0.H0": "colour, shape", "L0.H1": None}), "t")
    assert len(fig.axes[0].patches) == 2
    t = pd.DataFrame({"unit": ["L0.H0", "L0.H1", "L1.H0", "L1.H1"], "max_residual_diff": [0, 1e-16, 1e-15, 2e-16],
                      "l1_first_departure": [0, 2, 0, 1]})
    fig = plot_equivalence({"raw": t}, k=3)
    assert [im.get_array().shape for ax in fig.axes for im in ax.images] == [(2, 2), (2, 2)]
