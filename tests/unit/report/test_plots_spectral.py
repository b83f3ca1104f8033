"""Figure and table helpers of the spectral pages: names, tables, and figures that draw what they are given."""

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pandas as pd
import pytest

from residual_lib.paper.reference import reference
from residual_lib.report.plots_spectral import (dataset_display, model_display, order_agreement, order_table,
                                         plot_cross_model_correlation, plot_intrinsic_dimension,
                                         plot_similarity_heatmaps, side_table)


def test_display_names_follow_the_manifests():
    assert model_display("openclip-l") == "OpenCLIP-L"
    assert dataset_display("imagenet-sketch") == "Sketch"
    assert model_display("not-registered") == "not-registered"
    assert dataset_display("toy-colour") == "toy-colour"


def test_order_table_and_spearman_agreement():
    paper = reference("fig4_order").query("figure == '4a'")
    ours = paper.sort_values("rank")["dataset"].tolist()
    assert order_agreement(ours, paper) == pytest.approx(1.0)
    assert order_agreement(ours[::-1], paper) == pytest.approx(-1.0)
    assert np.isnan(order_agreement(["toy-a", "toy-b"], paper))
    table = order_table(["x", "y"], paper)
    assert len(table) == 13 and list(table["this build"][:3]) == ["x", "y", ""]
    assert table.columns[-1] == "Fig 4a, OpenCLIP-L (paper)"


def test_side_table_uses_mean_of_head_ratios():
    summary = pd.DataFrame({"layer": [0, 1], "linear_id": [2.0, 3.0], "twonn_id": [1.0, 1.5],
                            "ratio_mean_of_heads": [2.5, 2.2], "ratio_of_means": [2.0, 2.0], "evr1": [0.5, 0.4]})
    table = side_table(summary)
    assert list(table.columns) == ["L", "N", "Ratio", "EVR1"] and table.loc[0, "Ratio"] == 2.5


def test_figures_draw_ours_beside_the_papers():
    summary = pd.DataFrame({"layer": [0, 1], "linear_id": [2.0, 3.0], "twonn_id": [1.0, 1.5],
                            "ratio_mean_of_heads": [2.5, 2.2], "ratio_of_means": [2.0, 2.0], "evr1": [0.5, 0.4]})
    fig = plot_intrinsic_dimension({"toy": summary}, reference("fig2"))
    assert len(fig.axes) == 8 and "(paper)" in fig.axes[4].get_title()
    assert len(fig.axes[4].lines) == 7  # the paper's seven models
    mat = pd.DataFrame([[1.0, 0.5, 0.2, 0.9]], index=["d"], columns=["L0.H0", "L0.H1", "L1.H0", "L1.H1"])
    fig = plot_similarity_heatmaps({"toy": mat}, "ref")
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["0", "1"]
    corr = pd.DataFrame([[1.0, 0.9], [0.9, 1.0]], index=["a", "b"], columns=["a", "b"])
    assert len(plot_cross_model_correlation(corr, reference("fig9")).axes) == 4  # two panels + colorbars
    assert len(plot_cross_model_correlation(None, reference("fig9")).axes) == 2


def test_orders_over_different_datasets_compare_where_each_kind_falls_not_rank_by_rank():
    from residual_lib.paper.reference import reference
    from residual_lib.report.plots_spectral import order_by_role

    paper = reference("fig4_order").query("model == 'OpenCLIP-L'")
    table = order_by_role(["toy-colour", "toy-sketch", "toy-shape", "toy-noise"], paper).set_index("kind")
    ood = table.loc["out-of-distribution sets"]
    assert ood["this build"] == "toy-sketch (2 of 4), toy-noise (4 of 4)" and ood["position"] == "0.67"
    assert ood["Fig 4a, OpenCLIP-L (paper)"] == "Sketch (4 of 13), PACS (8 of 13), Random (13 of 13)"
    assert "SUN397 (1 of 13)" in table.loc["task datasets", "Fig 4a, OpenCLIP-L (paper)"]
