"""Training the toy CLIP: the loss, determinism of the checkpoint, and the smoke model end to end."""

import json
from dataclasses import replace

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from residual_lib.toy import train
from residual_lib.files import sha256_file as sha256
from residual_lib.toy.train import CONFIGS, contrastive_loss, ensure_model, is_current

SHORT = replace(CONFIGS["smoke"], steps=3, batch_size=16, pool_size=200)


def _features(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return (F.normalize(torch.randn(n, 8, generator=g), dim=-1),
            F.normalize(torch.randn(n, 8, generator=g), dim=-1))


def test_contrastive_loss_with_one_positive_equals_open_clips_clip_loss():
    """Oracle: open_clip's ClipLoss when each caption is true of its own image only."""
    from open_clip.loss import ClipLoss

    images, texts = _features(6, 0)
    scale = torch.tensor(12.0)
    ours = contrastive_loss(images, texts, scale, torch.eye(6, dtype=torch.bool))
    torch.testing.assert_close(ours, ClipLoss()(images, texts, scale))


def test_contrastive_loss_spreads_the_target_over_every_true_caption():
    """Matches a per-row loop over the definition, and is unchanged by swapping two captions true of the same images."""
    images, texts = _features(5, 1)
    positives = torch.eye(5, dtype=torch.bool)
    positives[0, 1] = positives[1, 0] = positives[1, 1] = positives[0, 0] = True
    positives[3, 4] = True
    scale = torch.tensor(10.0)
    logits = (scale * images @ texts.T).double()
    image_side = [-logits[i].log_softmax(0)[positives[i]].mean() for i in range(5)]
    text_side = [-logits[:, j].log_softmax(0)[positives[:, j]].mean() for j in range(5)]
    expected = (sum(image_side) / 5 + sum(text_side) / 5) / 2
    loss = contrastive_loss(images, texts, scale, positives)
    torch.testing.assert_close(loss.double(), expected)
    swap = [1, 0, 2, 3, 4]
    torch.testing.assert_close(contrastive_loss(images, texts[swap], scale, positives[:, swap]), loss)


def test_contrastive_loss_ignores_the_text_side_of_a_caption_true_of_no_image():
    images, texts = _features(4, 2)
    positives = torch.zeros(3, 4, dtype=torch.bool)
    positives[[0, 1, 2], [0, 1, 2]] = True  # caption 3 describes no image in the batch: a negative only
    loss = contrastive_loss(images[:3], texts, torch.tensor(10.0), positives)
    logits = 10.0 * images[:3] @ texts.T
    expected = (F.cross_entropy(logits, torch.arange(3)) + F.cross_entropy(logits[:, :3].T, torch.arange(3))) / 2
    torch.testing.assert_close(loss, expected)


def test_schedule_warms_up_then_decays_to_zero():
    config = replace(SHORT, steps=100, warmup=0.1)
    factors = np.array([train._schedule(s, config) for s in range(100)])
    assert factors[0] == pytest.approx(0.1) and factors[9] == pytest.approx(1.0)
    assert (np.diff(factors[:10]) > 0).all() and (np.diff(factors[10:]) <= 0).all() and factors[-1] < 0.01


def test_memoised_tokeniser_gives_the_tokenisers_rows():
    from residual_lib.toy.model import tokenizer_of

    tokenize = tokenizer_of("smoke")
    cached = train._memoised(tokenize)
    first = ["a red star.", "the circle.", "a red star."]
    second = ["the circle.", "a photo of a small striped cross in the top left."]
    assert torch.equal(cached(first), tokenize(first)) and torch.equal(cached(second), tokenize(second))


def test_truncated_checkpoint_manifest_counts_as_stale_and_is_named(tmp_path, capsys):
    """Issue 28 case 14: a cut-off manifest.json gave a bare JSONDecodeError from is_current, naming no file."""
    (tmp_path / "model.safetensors").write_bytes(b"weights")
    (tmp_path / "manifest.json").write_text('{"version": 2, "sha2')
    assert not is_current(tmp_path, SHORT)
    err = capsys.readouterr().err
    assert f"{tmp_path / 'manifest.json'} is truncated or damaged (JSONDecodeError" in err and "retrained when next needed" in err


@pytest.mark.slow
def test_same_seed_gives_the_same_checkpoint_bytes(tmp_path):
    a = train.train(SHORT, tmp_path / "a", progress=False)
    b = train.train(SHORT, tmp_path / "b", progress=False)
    c = train.train(replace(SHORT, seed=1), tmp_path / "c", progress=False)
    assert sha256(a) == sha256(b) != sha256(c)
    two = replace(SHORT, threads=2)  # another thread count: still one checkpoint per seed
    d, e = (train.train(two, tmp_path / name, progress=False) for name in "de")
    assert sha256(d) == sha256(e)
    bf16 = replace(two, precision="bf16")  # deterministic too, and not fp32's
    f, g = (train.train(bf16, tmp_path / name, progress=False) for name in "fg")
    assert sha256(f) == sha256(g) != sha256(d)
    manifest = json.loads((tmp_path / "a" / "manifest.json").read_text())
    assert manifest["sha256"] == sha256(a) and manifest["config"]["steps"] == 3
    assert is_current(tmp_path / "a", SHORT) and not is_current(tmp_path / "a", replace(SHORT, lr=1.0))
    assert (tmp_path / "a" / "curve.csv").read_text().count("\n") == 1 + SHORT.steps
    assert not torch.are_deterministic_algorithms_enabled()


@pytest.mark.slow
def test_smoke_model_trains_once_and_loads_by_name(smoke_artifacts):
    from residual_lib.units.decompose import decompose
    from residual_lib.models.registry import load_model
    from residual_lib.toy.evaluate import zero_shot_table

    checkpoint = ensure_model("smoke", progress=False)  # trained by the session's `toy.train --profile smoke`
    stamp = checkpoint.stat().st_mtime_ns
    model = load_model("toy-clip-smoke", device="cpu")
    assert checkpoint.stat().st_mtime_ns == stamp  # neither asking again nor loading retrained
    assert checkpoint == smoke_artifacts / "toy" / "smoke" / "model.safetensors"
    images = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8)
    batch = torch.stack([model.preprocess(im) for im in images])
    units = decompose(model, batch)
    torch.testing.assert_close(sum(units.values()), model.encode_image(batch), atol=1e-4, rtol=1e-4)
    assert model.encode_text(["a red star.", "the circle."]).shape == (2, model.embed_dim)
    table = zero_shot_table(model, ["toy-shape"], split="val", n=40)
    assert table.loc[0, "n"] == 40 and table.loc[0, "chance"] == pytest.approx(1 / 6)
    assert 0.0 <= table.loc[0, "accuracy"] <= 1.0


def test_unknown_profile_names_the_valid_ones():
    with pytest.raises(ValueError, match="valid: toy, smoke"):
        ensure_model("huge")


def test_unknown_precision_names_the_valid_ones():
    with pytest.raises(ValueError, match=r"precision 'fp16'; valid: fp32, bf16"):
        replace(SHORT, precision="fp16")


def test_creating_the_toy_model_does_not_warn_about_missing_weights(caplog):
    from residual_lib.toy.model import create

    with caplog.at_level("WARNING"):
        create("smoke")
    assert not [r for r in caplog.records if "pretrained" in r.getMessage()]


def test_checkpoint_files_get_the_users_umask(tmp_path):
    """safetensors writes 0600; a shared artifacts folder needs what the umask allows (issue 10)."""
    import os

    old = os.umask(0o022)
    try:
        train._save(torch.nn.Linear(2, 2), [(0, 1.0, 0.1, 2.0)], SHORT, tmp_path, 1.0)
    finally:
        os.umask(old)
    modes = {p.name: p.stat().st_mode & 0o777 for p in tmp_path.iterdir()}
    assert modes == {"model.safetensors": 0o644, "curve.csv": 0o644, "manifest.json": 0o644}
