"""The Protocol page's experiment: parameters, caches, the choices table and the measured effects."""

import pandas as pd
import pytest
from experiment_smoke import cell_defaults, notebook_parameters, planner_jobs_agree, smoke_params

from residual_lib.experiments import ParamsError, fig05_tab02, protocol
from residual_lib.paper.protocol import CHOICES
from residual_lib.reproduce.plan import STANDIN

PAGE = "protocol"


def test_params_defaults_are_the_notebooks_parameters_cell():
    assert protocol.Params().to_dict() == cell_defaults(PAGE)


@pytest.mark.parametrize("values, named", [({"fraction": 1.5}, "fraction=1.5"), ({"datasets": []}, "datasets"),
                                           ({"k": 0}, "k=0"), ({"dictionary": "mine"}, "dictionary='mine'"),
                                           ({"training_methods": ["Lin"]}, "training_methods=['Lin']"),
                                           ({"training_methods": ["RD", "SVD"]}, "training_methods=")])
def test_bad_parameters_are_errors_that_name_them(values, named):
    with pytest.raises(ParamsError, match="protocol") as err:
        protocol.Params(**values)
    assert named in str(err.value)


def test_caches_for_the_smoke_profile():
    keys = protocol.caches(smoke_params(PAGE))
    assert [(k.dataset, k.split, k.n) for k in keys] == [
        ("toy-mixed", "train", 120), ("toy-colour", "train", 100), ("toy-sketch", "train", 100),
        ("toy-colour", "train", 200), ("toy-colour", "val", 80), ("toy-colour", "test", 100)]
    assert {k.model for k in keys} == {"toy-clip-smoke"}


@pytest.mark.parametrize("profile, overrides", [("smoke", None), ("toy", None), ("paper", None), ("paper", STANDIN)])
def test_caches_are_among_the_planners_jobs(profile, overrides):
    assert planner_jobs_agree(PAGE, profile, overrides)


@pytest.mark.parametrize("profile", ["smoke", "toy", "paper"])
def test_training_reads_only_the_pages_caches(profile):
    """Table 2's training on the first task adds no extraction: its caches are the page's."""
    p = protocol.Params.from_dict(notebook_parameters(PAGE, profile))
    for reading in ("paper_text", "authors_code"):
        fp = p._training_params(reading)
        assert fp.protocol == reading and fp.finetune is False and fp.datasets == [p.datasets[0]]
        assert set(fig05_tab02.caches(fp)) <= set(protocol.caches(p))


def test_training_texts_from_a_constructed_table():
    training = pd.DataFrame({"protocol": ["paper_text"] * 3 + ["authors_code"] * 3,
                             "method": ["Base", "Lin", "RD"] * 2, "test accuracy": [0.9, 0.8, 0.7, 0.9, 0.85, 0.95],
                             "learning rate": ["", "1e-05", "0.002", "", "0.001", "0.8"], "epochs": [0, 30, 5, 0, 7, 11]})
    texts = protocol.training_texts(training, protocol.Params())
    lr = texts["Learning rate (Sec. 4.2)"]
    assert lr == ("Lin: 0.800 (lr 1e-05, 30 epochs) -> 0.850 (lr 0.001, 7 epochs); RD: 0.700 (lr 0.002, 5 epochs) -> "
                  "0.950 (lr 0.8, 11 epochs) (toy-shape test accuracy; paper_text -> authors_code)")
    assert texts["Lambda initialisation"].endswith(lr) and texts["Lin initialisation"].endswith(lr)
    without_lin = protocol.training_texts(training[training["method"] != "Lin"], protocol.Params())
    assert "Lin initialisation" not in without_lin and set(without_lin) <= {c.topic for c in CHOICES}
    assert protocol.training_texts(training.iloc[:0], protocol.Params()) == {}


def test_head_count_effect_by_hand():
    # ViT-L: 24 x 16 = 384 heads; 1%: round(3.84) = 4 and int(3.84) = 3; 5%: 19 (19.2); 10%: 38 (38.4)
    counts = protocol.head_count_effect(384).set_index("fraction")
    assert counts.loc[0.01].tolist() == [4, 3] and counts.loc[0.05].tolist() == [19, 19]
    assert counts.loc[0.10].tolist() == [38, 38]
    # 16 heads: 1% keeps 1 against the authors' 2; 10% keeps round(1.6) = 2 against int(1.6) = 1
    small = protocol.head_count_effect(16).set_index("fraction")
    assert small.loc[0.01].tolist() == [1, 2] and small.loc[0.10].tolist() == [2, 1]


def test_pursuit_effect_counts_shared_atoms(monkeypatch):
    def agreement(signals, atoms, k, seed, device, progress, center=True, normalize=True):
        ours = center and normalize
        return pd.DataFrame({"unit": ["L0.H0", "L0.H1"], "textspan": [[1, 2, 3], [4, 5, 6]] if ours else
                             [[3, 2, 9], [4, 5, 6]], "omp": [[1, 2, 3], [7, 8, 9]] if ours else [[0, 1, 2], [6, 5, 4]],
                             "z": [1.0, -2.0] if ours else [0.5, 3.0]})

    monkeypatch.setattr(protocol, "textspan_omp_agreement", agreement)
    out = protocol.pursuit_effect(None, None, 3, 0, "cpu")
    assert out["TextSpan atoms shared"].tolist() == [2, 3] and out["OMP atoms shared"].tolist() == [2, 0]
    assert out["|Z| ours"].tolist() == [1.0, 2.0] and out["|Z| authors"].tolist() == [0.5, 3.0]


def _frames():
    spectral = pd.DataFrame({"dataset": ["a", "a", "b"], "unit": ["L0.H0", "L0.H1", "L0.H0"],
                             "cosine": [0.5, 0.7, 0.9], "weighted": [0.6, 0.7, 0.6], "index": [0.5, 0.5, 0.5]})
    selections = pd.DataFrame({"score": ["U", "U", "U|T", "U|T"],
                               "reading": ["per_sample", "per_direction"] * 2, "k": 2, "kept": "",
                               "shared with the other reading": [1, 1, 2, 2],
                               "Spearman between readings": [0.5, 0.5, 1.0, 1.0],
                               "test accuracy": [0.3, 0.4, 0.5, 0.5]})
    counts = protocol.head_count_effect(16)
    pursuits = pd.DataFrame({"unit": ["L0.H0", "L0.H1"], "TextSpan atoms shared": [2, 3], "OMP atoms shared": [1, 0],
                             "|Z| ours": [1.0, 2.0], "|Z| authors": [2.0, 2.0], "k": 3})
    return spectral, selections, counts, pursuits


def test_effect_texts_from_constructed_measurements():
    effects = protocol.effect_texts(*_frames(), 36.8, protocol.Params(k=3))
    spectral = effects["Spectral similarity matching (Eq. 3)"]
    assert spectral.startswith("3 head-dataset pairs: |weighted - cosine| mean 0.133, max 0.300")
    assert "a 0.600 -> 0.650, b 0.900 -> 0.600" in spectral
    scores = effects["U and U|T head scores (Sec. 4.1)"]
    assert "U: 1 of 2 kept heads shared, Spearman 0.50, test accuracy 0.300 -> 0.400" in scores
    assert "U|T: 2 of 2 kept heads shared" in scores
    assert effects["Number of kept heads"] == "differs at 1% (1 vs 2), 10% (2 vs 1)"
    assert effects["TextSpan projection"] == ("2 heads: TextSpan shares 2.5 of 3 atoms on average; agreement mean "
                                              "|Z| 1.50 -> 2.00")
    assert "OMP shares 0.5 of 3" in effects["OMP dictionary"] and "36.8" in effects["Logit scale of the training loss"]
    assert set(effects) <= {c.topic for c in CHOICES}


def test_profile_values_come_from_the_parameter_files():
    values = protocol.profile_values()
    assert set(values["parameter"].str.split(".").str[1]) == set(protocol.SWITCHES)
    spectral = values[values["parameter"] == "fig04.similarity_matching"].set_index("profile")["value"]
    assert spectral.to_dict() == {"toy": "cosine", "paper": "weighted"}
    scale = values[values["parameter"] == "tab01.logit_scale"].set_index("profile")["value"]
    assert scale.to_dict() == {"toy": 100.0, "paper": "model"}


def test_choices_table_has_every_choice_with_profiles_and_effects():
    table = protocol.choices_table(protocol.profile_values(), {"Number of kept heads": "differs"})
    assert table["topic"].tolist() == [c.topic for c in CHOICES]
    row = table.set_index("topic")
    assert row.loc["Lambda initialisation", "page parameters"] == "tab01.protocol, fig05_tab02.protocol"
    assert row.loc["Lambda initialisation", "paper profile"] == "authors_code"
    assert row.loc["TextSpan projection", "toy profile"] == "True"
    assert row.loc["TextSpan projection", "paper profile"] == "False"
    assert row.loc["Number of kept heads", "measured here"] == "differs" and row.loc["Data sources and splits", "measured here"] == ""


@pytest.mark.slow
def test_run_on_the_smoke_model(smoke_artifacts):
    p = smoke_params(PAGE)
    result = protocol.run(p)
    t = result.tables
    assert result.findings["n_choices"] == len(CHOICES) == len(t["choices"])
    assert result.findings["n_measured"] == 8  # 6 without training, plus the learning rate and lambda rows
    training = t["training"].set_index(["protocol", "method"])
    assert set(training.index) == {(r, m) for r in ("paper_text", "authors_code") for m in ("Base", "RD")}
    assert training.loc[("authors_code", "RD"), "learning rate"] == "0.8"  # the authors' fixed rate for ResiDual
    assert training["test accuracy"].between(0, 1).all()
    assert len(t["spectral"]) == 2 * 4 and t["spectral"][["cosine", "weighted", "index"]].stack().between(0, 1 + 1e-9).all()
    assert t["selections"]["test accuracy"].between(0, 1).all() and len(t["selections"]) == 4
    assert t["pursuits"][["TextSpan atoms shared", "OMP atoms shared"]].stack().between(0, p.k).all()
    assert list(protocol.spectral_means(result).columns) == ["dataset", "cosine", "weighted", "index"]
