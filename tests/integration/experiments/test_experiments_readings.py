"""The reading choices as experiment parameters: each profile's values, validation, and that each reaches the code."""

import importlib
import math
import re
from types import SimpleNamespace

import pandas as pd
import pytest
import torch
from torch import nn

from residual_lib.alignment.tasks import UNSCALED_LOGIT_SCALE, resolve_logit_scale
from residual_lib.experiments import PAGES as PAGES_ALL
from residual_lib.experiments import ParamsError, appA2, fig02, fig03, fig04, fig05_tab02, page_params, tab01
from residual_lib.experiments.base import readings_text
from residual_lib.alignment.finetune import vision_tower
from experiment_smoke import notebook_parameters
from residual_lib.alignment.classifier import DEFAULT_LOGIT_SCALE

PAGES = {"fig02_intrinsic_dimension": fig02, "fig03_textspan_vs_omp": fig03, "appA2_textspan_equals_somp": appA2,
         "fig04_spectral_dataset_similarity": fig04, "tab01_coarse_unit_alignment": tab01,
         "fig05_tab02_residual_alignment": fig05_tab02}
# The paper profile keeps the per-head mean: the paper's printed table matches it, not the authors' notebook's rule.
PAPER_KEEPS_OURS = {("fig02_intrinsic_dimension", "ratio")}


@pytest.mark.parametrize("notebook", PAGES)
def test_toy_profile_keeps_todays_reading_and_the_paper_profile_sets_the_authors(notebook):
    module = PAGES[notebook]
    toy = page_params(notebook, notebook_parameters(notebook, "toy"))
    paper = page_params(notebook, notebook_parameters(notebook, "paper"))
    defaults = module.Params()
    assert module.AUTHORS and set(module.AUTHORS) <= set(module.Params.names())
    for name, authors in module.AUTHORS.items():
        assert getattr(toy, name) == getattr(defaults, name) != authors, name
        expected = getattr(defaults, name) if (notebook, name) in PAPER_KEEPS_OURS else authors
        assert getattr(paper, name) == expected, name


@pytest.mark.parametrize("module, values, named", [
    (tab01, {"head_score": "per_head"}, "head_score='per_head'"),
    (tab01, {"protocol": "authors"}, "protocol='authors'"),
    (tab01, {"logit_scale": "own"}, "logit_scale='own'"),
    (tab01, {"logit_scale": -1.0}, "logit_scale=-1.0"),
    (tab01, {"random_rule": "permutation"}, "random_rule='permutation'"),
    (fig05_tab02, {"prompts": "openai"}, "prompts='openai'"),
    (fig05_tab02, {"logit_scale": 0}, "logit_scale=0"),
    (fig04, {"similarity_matching": "greedy"}, "similarity_matching='greedy'"),
    (fig03, {"omp_normalize": "no"}, "omp_normalize='no'"),
    (fig03, {"extra_pcs": [1]}, "extra_pcs=[1]"),
    (fig02, {"ratio": "median"}, "ratio='median'"),
])
def test_bad_reading_values_are_errors_naming_them(module, values, named):
    with pytest.raises(ParamsError) as err:
        module.Params(**values)
    assert named in str(err.value)


REFUSED_LATER = {  # values `run` (TwoNN, the unit cache, numpy's generators, the device, the dictionaries) refuses
    "discard_fraction": (0.0, "discard_fraction=0.0 must be in (0, 1)"),
    "cache_dtype": ("int8", "cache_dtype='int8' is not one of 'float32', 'float16'"),
    "seed": (-1, "seed=-1 must be >= 0"),
    "device": ("gpu", "device='gpu' must be one of auto, cpu, cuda"),
    "dictionary": ("nope", "dictionary='nope' is not one of 'toy', 'gandelsman-general'"),
}


@pytest.mark.parametrize("module", sorted(set(PAGES_ALL.values())))
def test_params_refuse_what_run_would_refuse(module):
    """Issue 28 case 11: fig02.Params(discard_fraction=0.0) and fig02.Params(cache_dtype="int8") passed, and failed
    later inside intrinsic_dim and the cache; every experiment's Params now refuses them on creation."""
    params = importlib.import_module(f"residual_lib.experiments.{module}").Params
    fields = set(params.names()) & set(REFUSED_LATER)
    for name in fields:
        value, named = REFUSED_LATER[name]
        with pytest.raises(ParamsError, match=re.escape(f"{module}: parameter {named}")):
            params(**{name: value})


def test_logit_scale_model_and_numbers_are_accepted():
    assert tab01.Params(logit_scale="model").logit_scale == "model"
    assert fig05_tab02.Params(logit_scale=50).logit_scale == 50


def test_readings_text_names_each_value_and_the_authors():
    text = readings_text(tab01.Params(head_score="per_direction"), {"head_score": "per_direction",
                                                                     "protocol": "authors_code"})
    assert text == ("head_score='per_direction' (the authors' code); "
                    "protocol='paper_text' (the authors' code: 'authors_code')")


def test_fig02_sample_readings_pick_the_rows_of_each():
    """paper_text: n rows with the page's seed; authors_code: 50,000 uniform rows, seed 42, all of a smaller split."""
    assert fig02.caches(fig02.Params())[0].n == 2000 and fig02.caches(fig02.Params())[0].seed == 0
    toy = fig02.caches(fig02.Params(sample="authors_code", n=100, seed=3))[0]
    assert (toy.n, toy.seed) == (9000, 42)  # toy-mixed's train split has 9,000 images: all of them
    paper = fig02.caches(page_params("fig02_intrinsic_dimension",
                                     notebook_parameters("fig02_intrinsic_dimension", "paper")))
    assert {(k.dataset, k.split, k.n, k.seed) for k in paper} == {("imagenet", "authors_train", 50_000, 42)}
    assert len(paper) == 7


def test_resolve_logit_scale():
    with_scale = SimpleNamespace(module=SimpleNamespace(logit_scale=torch.tensor(math.log(50.0))), name="m")
    without = SimpleNamespace(module=SimpleNamespace(), name="blip")
    assert resolve_logit_scale(with_scale, 30) == 30.0
    assert resolve_logit_scale(with_scale, "model") == pytest.approx(50.0)
    assert resolve_logit_scale(without, "model") == UNSCALED_LOGIT_SCALE == 1.0  # the authors' BLIP: plain cosines
    assert resolve_logit_scale(without, 100) == DEFAULT_LOGIT_SCALE


def test_vision_tower_of_a_blip_like_module_leaves_the_text_encoder_out():
    blip = nn.Module()
    blip.vision_model, blip.vision_proj = nn.Linear(4, 3), nn.Linear(3, 2)
    blip.text_encoder, blip.text_proj = nn.Linear(5, 5), nn.Linear(5, 2)
    tower = vision_tower(blip)
    assert sum(p.numel() for p in tower.parameters()) == (4 * 3 + 3) + (3 * 2 + 2)
    clip = nn.Module()
    clip.visual, clip.transformer = nn.Linear(2, 2), nn.Linear(7, 7)
    assert vision_tower(clip) is clip.visual
    image_only = nn.Linear(2, 2)
    assert vision_tower(image_only) is image_only


def test_train_keys_change_with_every_reading():
    base = tab01.Params()
    keys = {str(tab01.train_key(base.replace(**{name: value}), "m", "d")) for name, value in tab01.AUTHORS.items()}
    assert len(keys) == len(tab01.AUTHORS) and str(tab01.train_key(base, "m", "d")) not in keys
    f5 = fig05_tab02.Params()
    assert (fig05_tab02.train_key(f5, "m", "d", 0)
            != fig05_tab02.train_key(f5.replace(protocol="authors_code"), "m", "d", 0))


class _Recorder:
    """Stands in for a library function: records its arguments, returns a fixed value."""

    def __init__(self, value=None):
        self.value, self.calls = value, []

    def __call__(self, *args, **kwargs):
        self.calls.append((args, kwargs))
        return self.value


def _wire(monkeypatch, module, names: dict):
    recorders = {name: _Recorder(value) for name, value in names.items()}
    for name, recorder in recorders.items():
        monkeypatch.setattr(module, name, recorder)
    monkeypatch.setattr(module, "resolve_logit_scale", lambda model, requested: ("resolved", requested))
    monkeypatch.setattr(module.Architecture, "from_model", staticmethod(lambda model: "arch"))
    return recorders


@pytest.mark.parametrize("protocol, lr", [("paper_text", None), ("authors_code", 0.8)])
def test_tab01_passes_every_reading_to_the_library(monkeypatch, protocol, lr):
    task = SimpleNamespace(classifier=SimpleNamespace(n_classes=3, kind="zero-shot (text)"))
    health = {"healthy": True, "flags": ""}
    optimised = {0: SimpleNamespace(test_accuracy=0.5, extra={"health": health})}
    rec = _wire(monkeypatch, tab01, {"load_task": task, "coarse_unit_alignment": ({"k": 2}, pd.DataFrame(), optimised),
                                     "kept_heads": pd.DataFrame()})
    p = tab01.Params(protocol=protocol, head_score="per_direction", head_count="authors", random_rule="randn_topk",
                     logit_scale="model", prompts="authors", max_epochs=7, device="cpu")
    row, *_ = tab01._train_task(p, "m", "d", model="model")
    assert row["O health"] == {0: {**health, "remedy": ""}}
    (_, load_kw), = rec["load_task"].calls
    assert load_kw["logit_scale"] == ("resolved", "model") and load_kw["prompts"] == "authors"
    (args, kw), = rec["coarse_unit_alignment"].calls
    config = args[5]
    assert config.lr == lr and config.max_epochs == 7 and config.batch_size == 64
    assert config.lambda_init_noise == (1.0 if protocol == "authors_code" else 0.0)
    assert kw == {"head_score": "per_direction", "head_count": "authors", "random_rule": "randn_topk", "seeds": [0, 1, 2]}
    (args, _), = rec["kept_heads"].calls
    assert args == (task, 2, "per_direction"), "the probe table marks the heads the same reading kept"


@pytest.mark.parametrize("protocol", ["paper_text", "authors_code"])
def test_fig05_passes_the_protocol_to_every_method_and_finetuning(monkeypatch, protocol):
    task = SimpleNamespace(classifier=SimpleNamespace(kind="zero-shot (text)"))
    rec = _wire(monkeypatch, fig05_tab02, {"load_task": task, "extract": None, "in_memory": "reference",
                                           "residual_alignment": {"Base": SimpleNamespace(extra={})},
                                           "full_finetuning": "finetuned"})
    p = fig05_tab02.Params(protocol=protocol, logit_scale=30.0, prompts="authors", max_epochs=4,
                           finetune_max_epochs=3, train_batch_size=32, device="cpu")
    out = fig05_tab02._train_task(p, "m", "d", model="model")
    assert out["Full finetuning"] == "finetuned" and out["Base"].extra["classifier"] == "zero-shot (text)"
    (_, load_kw), = rec["load_task"].calls
    assert load_kw["logit_scale"] == ("resolved", 30.0) and load_kw["prompts"] == "authors"
    (_, kw), = rec["residual_alignment"].calls
    assert kw["protocol"] == protocol and kw["overrides"]["max_epochs"] == 4 and kw["overrides"]["batch_size"] == 32
    (args, _), = rec["full_finetuning"].calls
    ft = args[-1]
    assert ft.max_epochs == 3
    if protocol == "authors_code":  # the authors' finetuning: 1e-5, batch 128, gradient norm clipped to 1
        assert (ft.lr, ft.batch_size, ft.grad_clip) == (1e-5, 128, 1.0)
    else:  # the LR range test up to 0.1, the page's batch
        assert (ft.lr, ft.batch_size, ft.grad_clip, ft.max_lr) == (None, 32, None, 0.1)
    fig05_tab02._train_task(p.replace(finetune_lr=3e-4), "m", "d", model="model")
    assert rec["full_finetuning"].calls[-1][0][-1].lr == 3e-4


def test_fig03_names_the_papers_heads_with_their_roles():
    assert fig03.paper_heads("3") == {(20, 8): "Scenery", (21, 11): "Location", (22, 8): "Letters",
                                      (23, 2): "Animals"}
    assert fig03.paper_heads("4b") == {(22, 7): "Seasons", (22, 11): "Grayscale", (23, 10): "Numbers"}
    assert fig03.paper_heads("3 (PC3)") == {}


def test_fig03_description_rows_carry_the_role_of_named_heads():
    table = pd.DataFrame({"layer": [20, 20], "head": [8, 9], "TextSpan": [["a", "b"], ["c", "d"]],
                          "OMP2": [["e", "f"], ["g", "h"]]})
    rows = fig03._description_rows(table, "8", [0, 1], {0: "Scenery"}, 2, 2)
    assert list(rows.columns) == ["figure", "layer", "head", "role", "method", "rank", "text"]
    assert rows[rows["head"] == 8].role.eq("Scenery").all() and rows[rows["head"] == 9].role.eq("").all()
    assert rows[(rows["head"] == 9) & (rows.method == "OMP2")].text.tolist() == ["g", "h"]


def test_fig04_named_rows_are_the_papers_long_format():
    rows = fig04._named_rows({"L22.H7": ["spring", "snow"]}, {"L22.H7": "Seasons"})
    assert rows.to_dict("records") == [
        {"figure": "4b", "layer": 22, "head": 7, "role": "Seasons", "method": "SOMP", "rank": 1, "text": "spring"},
        {"figure": "4b", "layer": 22, "head": 7, "role": "Seasons", "method": "SOMP", "rank": 2, "text": "snow"}]


def test_fig9_correlates_the_papers_fig9_models_when_two_are_built():
    rows = [{"model": m, "dataset": d, "similarity": s} for m, values in
            {"CLIP-L": [0.9, 0.5, 0.1], "OpenCLIP-L": [0.8, 0.6, 0.2], "CLIP-B": [0.1, 0.5, 0.9]}.items()
            for d, s in zip("abc", values)]
    table = pd.DataFrame(rows)
    corr = fig04._correlation(table, {"CLIP-L", "OpenCLIP-L"})
    assert list(corr.columns) == ["CLIP-L", "OpenCLIP-L"]
    # without two of the paper's models, every model of the build
    assert list(fig04._correlation(table, {"CLIP-L"}).columns) == ["CLIP-B", "CLIP-L", "OpenCLIP-L"]
    assert corr.loc["CLIP-L", "OpenCLIP-L"] == pytest.approx(0.9819805, abs=1e-6)
    assert fig04._correlation(table[table.model == "CLIP-B"], set()) is None


@pytest.mark.parametrize("notebook", ["toy_world", "fig02_intrinsic_dimension", "fig03_textspan_vs_omp",
                                      "appA2_textspan_equals_somp", "fig04_spectral_dataset_similarity", "real_model",
                                      "tab01_coarse_unit_alignment", "fig05_tab02_residual_alignment", "atlas",
                                      "protocol"])
def test_every_computing_page_takes_the_toy_profiles_one_thread_and_refuses_zero(notebook):
    """`threads` lives in `ComputeParams`, once: the toy profile's 1 reaches every page that computes, 0 is refused
    with the experiment's name, and `run` is wrapped by `computes`, which applies it."""
    from residual_lib.experiments import experiment
    from residual_lib.experiments.base import computes

    module = experiment(notebook)
    assert module.run.__code__ is computes(lambda p: None).__code__
    assert page_params(notebook, notebook_parameters(notebook, "toy")).threads == 1
    with pytest.raises(ParamsError, match=rf"{module.__name__.rsplit('.', 1)[-1]}: parameter threads=0 must be positive"):
        module.Params(threads=0)
