"""Full finetuning of the vision tower with a frozen text classifier (tiny random-initialised open_clip CLIP)."""

import numpy as np
import pytest
import torch

from residual_lib.models.open_clip import OpenClipAdapter
from residual_lib.alignment.finetune import VisionTower, finetune, preprocessed_images
from residual_lib.alignment.training import TrainConfig
from residual_lib.alignment.classifier import Classifier


def _tiny_model():
    from open_clip.model import CLIP, CLIPTextCfg, CLIPVisionCfg

    torch.manual_seed(0)
    module = CLIP(embed_dim=16, vision_cfg=CLIPVisionCfg(layers=1, width=32, head_width=16, patch_size=8, image_size=16),
                  text_cfg=CLIPTextCfg(context_length=12, vocab_size=100, width=32, heads=2, layers=1))
    return OpenClipAdapter(module, "tiny-clip")


def _coloured_images(n: int, seed: int):
    """uint8 (3, 16, 16) images whose dominant channel is the label (3 classes)."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 3
    images = rng.integers(0, 60, size=(n, 3, 16, 16), dtype=np.uint8)
    images[np.arange(n), labels] += 180
    return [(torch.from_numpy(img), int(y)) for img, y in zip(images, labels)]


@pytest.mark.slow
def test_finetuning_trains_only_the_vision_tower_and_improves_validation():
    model = _tiny_model()
    text_before = {k: v.clone() for k, v in model.module.state_dict().items() if not k.startswith("visual.")}
    visual_before = {k: v.clone() for k, v in model.module.visual.state_dict().items()}
    classifier = Classifier(torch.nn.functional.normalize(torch.randn(3, 16, generator=torch.Generator().manual_seed(1))),
                                    ("r", "g", "b"), logit_scale=10.0)
    train = preprocessed_images(model, _coloured_images(96, 0), progress=False)
    val = preprocessed_images(model, _coloured_images(48, 1), progress=False)
    assert train[0].shape == (96, 3, 16, 16) and list(train[1][:4]) == [0, 1, 2, 0]
    tower, result = finetune(model, classifier, train, val,
                             TrainConfig(lr=3e-3, max_epochs=6, batch_size=16, progress=False))
    accs = result.frame()["val_accuracy"]
    assert result.best_val_accuracy == accs.max() > accs[0]
    after = tower.model.module.state_dict()
    assert all(torch.equal(after[k], v) for k, v in text_before.items())          # text side frozen
    assert any(not torch.equal(tower.visual.state_dict()[k], v) for k, v in visual_before.items())
    assert all(torch.equal(model.module.visual.state_dict()[k], v) for k, v in visual_before.items())  # a copy
    assert tower.n_params == sum(p.numel() for p in model.module.visual.parameters())
    assert isinstance(tower, VisionTower)
