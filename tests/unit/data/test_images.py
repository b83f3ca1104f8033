"""Images become 8-bit RGB where that is well defined (issue 28 case 10), and name the dataset and row otherwise."""

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import transforms

from residual_lib.data.images import to_rgb
from residual_lib.data.sources import SplitView
from residual_lib.store.cache import _Preprocessed

NORMALISE = transforms.Compose([transforms.ToTensor(), transforms.Normalize([0.5] * 3, [0.5] * 3)])


def test_transparent_pixels_show_white_and_opaque_ones_keep_their_colour():
    pixels = np.zeros((2, 2, 4), np.uint8)
    pixels[0, 0] = (10, 20, 30, 255)  # opaque
    pixels[1, 1] = (10, 20, 30, 0)  # transparent: its colour is meaningless
    rgb = np.asarray(to_rgb(Image.fromarray(pixels, "RGBA"), "x"))
    assert rgb[0, 0].tolist() == [10, 20, 30] and rgb[1, 1].tolist() == [255, 255, 255]


def test_sixteen_bit_grey_is_scaled_not_clipped():
    """Pillow's convert('RGB') clipped 16-bit values to 255: a mid-grey 16-bit image turned white."""
    grey = np.array([[0, 257, 32896, 65535]], np.uint16)
    rgb = np.asarray(to_rgb(Image.fromarray(grey), "x"))
    assert rgb[0, :, 0].tolist() == [0, 1, 128, 255] and (rgb[..., 0] == rgb[..., 2]).all()


def test_cmyk_converts_and_a_mode_without_a_range_is_named():
    assert to_rgb(Image.new("CMYK", (3, 3), (0, 255, 255, 0)), "x").getpixel((0, 0)) == (255, 0, 0)
    with pytest.raises(ValueError, match=r"dataset 'd' row 7: image mode 'F' has no fixed range"):
        to_rgb(Image.fromarray(np.zeros((3, 3), np.float32)), "dataset 'd' row 7")


class FourChannelImages(torch.utils.data.Dataset):
    """A user's dataset whose row 1 is RGBA and row 2 a float image."""

    def __init__(self):
        self.images = [Image.new("RGB", (4, 4)), Image.new("RGBA", (4, 4), (0, 0, 0, 0)),
                       Image.fromarray(np.zeros((4, 4), np.float32))]

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        return self.images[i], 0


def test_any_dataset_reaching_the_cache_is_made_rgb_or_named():
    """An RGBA image failed deep inside normalisation ('size of tensor a (4) must match ... (3)'), no row named."""
    model = type("Model", (), {"preprocess": staticmethod(NORMALISE)})()
    rows = _Preprocessed(FourChannelImages(), np.arange(3), model, "mine")
    assert rows[1][0].shape == (3, 4, 4) and torch.allclose(rows[1][0], torch.ones(3, 4, 4))  # white
    with pytest.raises(ValueError, match=r"dataset 'mine' row 2: image mode 'F'"):
        rows[2]
    view = SplitView(FourChannelImages(), np.array([2]), np.zeros(3), "mine")
    with pytest.raises(ValueError, match=r"dataset 'mine' row 0: image mode 'F'"):
        view[0]
