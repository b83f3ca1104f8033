"""The paper's reported numbers (data_manifests/paper/*.csv), shown beside ours and labelled as the paper's."""

import pandas as pd

from ..paths import MANIFESTS

REFERENCES = {
    "table1": "table1_coarse_unit_alignment.csv",
    "table2": "table2_residual_alignment.csv",
    "table2_params": "table2_params.csv",
    "fig2": "fig2_intrinsic_dimension.csv",
    "fig3_agreement": "fig3_fig8_textspan_omp_agreement.csv",
    "fig3_descriptions": "fig3_fig8_descriptions.csv",
    "fig4_order": "fig4_dataset_order.csv",
    "fig9": "fig9_cross_model_correlation.csv",
}


def reference(name: str) -> pd.DataFrame:
    """One of the paper's tables or figure transcriptions as a DataFrame (keys: see REFERENCES)."""
    if name not in REFERENCES:
        raise KeyError(f"unknown paper reference {name!r}; valid: {', '.join(REFERENCES)}")
    return pd.read_csv(MANIFESTS / "paper" / REFERENCES[name], keep_default_na=False,
                       dtype={"layer": "Int64", "head": "Int64"} if name.startswith("fig3") else None)
