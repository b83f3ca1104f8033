"""The paper profile's extraction plan, its sharding and its command line (the stand-in run for real is in
test_paper_standin.py)."""

import json

import numpy as np
import pytest

from residual_lib.reproduce import plan as reproduce
from residual_lib.experiments import fig02
from residual_lib.store.cache import CacheKey
from residual_lib.reproduce.plan import plan, sort_key

TABLE_DATASETS = {"cifar10", "cifar100", "cars", "dtd", "eurosat", "gtsrb", "mnist", "resisc45", "sun397", "svhn"}
FIGURE4_DATASETS = TABLE_DATASETS | {"imagenet-sketch", "pacs", "random-blobs"}  # the authors' Random set
TEXT_MODELS = {"clip-b", "clip-l", "openclip-b", "openclip-l", "blip-l"}
VIT_L = {"clip-l", "openclip-l", "blip-l", "dinov2-l", "vit-l"}


@pytest.fixture(scope="module")
def paper_plan():
    return plan("paper")


def test_paper_plan_covers_every_model_dataset_pair_the_notebooks_need(paper_plan):
    pairs = {(j.model, j.dataset) for j in paper_plan}
    assert {(m, "imagenet") for m in TEXT_MODELS | VIT_L} <= pairs, "every model's ImageNet reference (Fig 2, 4, 7)"
    assert {(m, d) for m in VIT_L | {"clip-b", "openclip-b"} for d in FIGURE4_DATASETS} <= pairs, \
        "Figure 4 / 10-15: every model x 13"
    assert {(m, d) for m in TEXT_MODELS for d in TABLE_DATASETS} <= pairs, "Tables 1, 2, 6: text models x 10"
    splits = {(j.model, j.dataset, j.split) for j in paper_plan}
    assert {("clip-l", d, s) for d in TABLE_DATASETS for s in ("train", "val", "test")} <= splits
    # Section 3 reads training images only: the text's train split, and Figure 2's authors' sample of authors_train
    assert not any(j.model in {"dinov2-l", "vit-l"} and j.split not in {"train", "authors_train"} for j in paper_plan), \
        "models without a text tower appear in Section 3 only"
    assert {(m, "imagenet", "authors_train", 50_000) for m in VIT_L} <= {(j.model, j.dataset, j.split, j.n)
                                                                          for j in paper_plan}


def test_plan_is_sorted_unique_and_filterable(paper_plan):
    assert len(set(paper_plan)) == len(paper_plan)
    assert paper_plan == sorted(paper_plan, key=sort_key)
    narrow = plan("paper", models=["clip-l"], datasets=["mnist", "imagenet"])
    assert narrow and {(j.model, j.dataset) for j in narrow} <= {("clip-l", "mnist"), ("clip-l", "imagenet")}
    assert reproduce._names(["clip-l,blip-l", "vit-l"]) == ["clip-l", "blip-l", "vit-l"]


def test_plan_mirrors_the_page_parameters(tmp_path):
    """A parameter file overrides the experiment's defaults, and overrides win, as in the book runner."""
    (tmp_path / "notebooks" / "params" / "paper").mkdir(parents=True)
    (tmp_path / "book").mkdir()
    (tmp_path / "book" / "_toc.yml").write_text(
        "format: jb-book\nroot: intro\nchapters:\n  - file: notebooks/fig02_intrinsic_dimension\n")
    cell = "\n".join(f"{k} = {v!r}" for k, v in fig02.Params().to_dict().items())
    (tmp_path / "notebooks" / "fig02_intrinsic_dimension.py").write_text(
        f'# %% tags=["parameters"]\n{cell}\n\n# %%\nprint(models)\n')
    params = tmp_path / "notebooks" / "params"
    (params / "paper" / "fig02_intrinsic_dimension.yaml").write_text("models: [b, c]\nn: null\nseed: 3\n")
    (params / "paper" / "_defaults.yaml").write_text("cache_dtype: float16\nnot_declared: 2\n")
    jobs = plan("paper", root=tmp_path)
    assert jobs == [CacheKey("b", "toy-mixed", "train", None, 3, "float16"),
                    CacheKey("c", "toy-mixed", "train", None, 3, "float16")]
    jobs = plan("paper", overrides={"models": ["z"], "n": 5}, root=tmp_path)
    assert jobs == [CacheKey("z", "toy-mixed", "train", 5, 3, "float16")]


def test_cache_key_status_reads_the_cache_manifest(tmp_path):
    job = CacheKey("m", "d", "train", None, 0, "float16")
    assert job.status(tmp_path) == "todo"
    folder = tmp_path / "m-0123456789ab" / "d" / "train-nall-seed0-paper-float16"
    folder.mkdir(parents=True)
    (folder / "manifest.json").write_text(json.dumps({"params": {}, "complete": False}))
    assert job.status(tmp_path) == "partial"
    (folder / "manifest.json").write_text(json.dumps({"params": {}, "complete": True}))
    assert job.status(tmp_path) == "done"
    other = tmp_path / "m-x-0123456789ab" / "d" / "train-nall-seed0-paper-float16"
    other.mkdir(parents=True)
    assert CacheKey("m-x", "d", "train", None, 0, "float16").status(tmp_path) == "partial", \
        "model m-x's folder is not model m's"


def test_cache_key_status_checks_the_files_not_only_the_complete_flag(tmp_path):
    """Issue 28 case 5: a finished cache with one shard file deleted (or cut short) was listed as done."""
    job = CacheKey("m", "d", "train", None, 0, "float16")
    folder = tmp_path / "m-0123456789ab" / "d" / "train-nall-seed0-paper-float16"
    (folder / "shards" / "00000").mkdir(parents=True)
    files = {"head_basis.npy": np.zeros((2, 3, 4)), "shards/00000/emb.npy": np.ones((8, 4), np.float16)}
    for relative, array in files.items():
        np.save(folder / relative, array)
    (folder / "manifest.json").write_text(json.dumps({"params": {}, "complete": True, "files": dict.fromkeys(files)}))
    assert job.status(tmp_path) == "done"
    shard_file = folder / "shards" / "00000" / "emb.npy"
    shard_file.write_bytes(shard_file.read_bytes()[:-10])
    assert job.status(tmp_path) == "partial", "a truncated shard file"
    shard_file.unlink()
    assert job.status(tmp_path) == "partial", "a deleted shard file"


def test_cli_lists_the_standin_plan(capsys):
    assert reproduce.main(["--standin", "--list"]) == 0
    out = capsys.readouterr()
    assert "standin-clip" in out.out and "todo" in out.out and "(stand-in)" in out.err


@pytest.mark.parametrize("flag, value", [("--workers", "0"), ("--batch-size", "-1")])
def test_counts_below_one_are_refused_before_planning(flag, value, capsys, monkeypatch):
    """Issue 28 case 3: `reproduce --workers 0` planned for 16 s, then ended in a traceback."""
    monkeypatch.setattr(reproduce, "plan", lambda *a, **k: pytest.fail("planned before checking the arguments"))
    with pytest.raises(SystemExit) as exit_:
        reproduce.main([flag, value])
    assert exit_.value.code == 2
    assert f"argument {flag}: {value} must be at least 1" in capsys.readouterr().err


def test_book_args_carry_the_selection():
    args = reproduce.book_overrides(False, ["clip-l"], ["mnist", "svhn"])
    assert args == ["models=[clip-l]", "model_name=clip-l", "datasets=[mnist,svhn]"]
    standin = reproduce.book_overrides(True, None, None)
    assert "dictionary=toy" in standin and "n_train=null" in standin
    from residual_lib.book.runner import parse_overrides
    assert parse_overrides(standin)["datasets"] == reproduce.STANDIN["datasets"]
    assert all(" " not in word for word in standin), "each override must survive shell word splitting"


@pytest.mark.parametrize("extra", [[], ["--book-args"], ["--list"]])
def test_unknown_model_or_dataset_is_named_with_the_valid_ones(capsys, extra):
    with pytest.raises(SystemExit) as exit_info:
        reproduce.main(["--models", "clip-x,clip-l", *extra])
    assert exit_info.value.code != 0
    err = capsys.readouterr().err
    assert "unknown model(s) clip-x for profile 'paper'; valid: blip-l, clip-b, clip-b16-image, clip-l" in err
    with pytest.raises(SystemExit) as exit_info:
        reproduce.main(["--standin", "--datasets", "mnist", *extra])
    assert exit_info.value.code != 0
    assert ("unknown dataset(s) mnist for profile 'paper' (stand-in); valid: standin-cifar10, standin-imagenet, "
            "standin-mnist") in capsys.readouterr().err
