"""The bundled photos load offline, in the right shape and range, and bad names are explained."""

from __future__ import annotations

import socket

import pytest
import torch

from utils import photos


@pytest.fixture
def offline(monkeypatch):
    """Any attempt to open a network connection fails, as on a machine without internet."""

    def refuse(*args, **kwargs):
        raise OSError("network access is disabled in this test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    photos._raw.cache_clear()  # make every photo load from its file again


def test_every_photo_loads_offline(offline):
    for name in photos.PHOTOS:
        image = photos.load(name, size=48)
        assert image.shape == (3, 48, 48), name
        assert image.dtype == torch.float32
        assert float(image.min()) >= 0.0 and float(image.max()) <= 1.0
        assert float(image.std()) > 0.02, f"{name} looks blank"


def test_native_size_and_grey_photos_become_rgb():
    cat = photos.load("cat", size=None)
    assert cat.shape == (3, 300, 451)
    camera = photos.load("camera", size=None)
    assert camera.shape == (3, 512, 512)
    assert torch.equal(camera[0], camera[1]) and torch.equal(camera[1], camera[2])
    horse = photos.load("horse", size=64)
    assert set(horse.unique().round(decimals=2).tolist()) >= {0.0, 1.0}


def test_load_all_and_as_pil():
    names, images = photos.load_all(size=32)
    assert names == list(photos.PHOTOS) and len(names) >= 15
    assert images.shape == (len(names), 3, 32, 32)
    picture = photos.as_pil("astronaut", size=40)
    assert picture.size == (40, 40) and picture.mode == "RGB"


def test_descriptions_are_one_line_each():
    for name, description in photos.PHOTOS.items():
        assert description and "\n" not in description and len(description) < 100, name


def test_bad_input_is_explained():
    with pytest.raises(ValueError, match="unknown photo 'lena'.*astronaut, cat"):
        photos.load("lena")
    with pytest.raises(ValueError, match="size must be None"):
        photos.load("cat", size=0)
    with pytest.raises(ValueError, match="size must be None"):
        photos.load("cat", size=2.5)
    with pytest.raises(ValueError, match="needs a size"):
        photos.load_all(size=None)
