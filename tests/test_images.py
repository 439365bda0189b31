"""Every Pillow mode a user image can have becomes 8-bit RGB with its true range (hiresflow.images)."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from hiresflow.images import frame_count, to_rgb


def _rgb(img) -> np.ndarray:
    out = to_rgb(img)
    assert out.mode == "RGB" and out.size == img.size
    return np.asarray(out)


def _roundtrip(img: Image.Image, fmt: str = "PNG", **kw) -> Image.Image:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    buf.seek(0)
    return Image.open(buf)


def test_sixteen_bit_grayscale_png_is_scaled_not_clipped():
    values = np.array([[0, 257, 32768, 65535]], dtype=np.uint16)
    img = _roundtrip(Image.fromarray(values))
    assert img.mode in ("I;16", "I")  # as Pillow opens a 16-bit grayscale PNG
    px = _rgb(img)[0, :, 0]
    assert px.tolist() == [0, 1, 128, 255]  # Pillow's convert("RGB") gives [0, 255, 255, 255]
    assert (_rgb(img)[..., 0] == _rgb(img)[..., 2]).all()


@pytest.mark.parametrize("mode", ["I;16B", "I;16L"])
def test_sixteen_bit_byte_orders(mode):
    dtype = ">u2" if mode == "I;16B" else "<u2"
    img = Image.frombytes(mode, (2, 1), np.array([[0, 65535]], dtype=dtype).tobytes())
    assert _rgb(img)[0, :, 1].tolist() == [0, 255]


def test_32_bit_integer_in_16_bit_range_and_beyond():
    assert _rgb(Image.fromarray(np.array([[0, 65535]], dtype=np.int32)))[0, :, 0].tolist() == [0, 255]
    wide = Image.fromarray(np.array([[-100, 0, 100]], dtype=np.int32))  # outside 0…65535: min…max
    assert _rgb(wide)[0, :, 0].tolist() == [0, 128, 255]


def test_float_images_unit_range_byte_range_and_other():
    assert _rgb(Image.fromarray(np.array([[0.0, 0.5, 1.0]], dtype=np.float32)))[0, :, 0].tolist() == [0, 128, 255]
    assert _rgb(Image.fromarray(np.array([[0.0, 100.0, 255.0]], dtype=np.float32)))[0, :, 0].tolist() == [0, 100, 255]
    assert _rgb(Image.fromarray(np.array([[-1.0, 0.0, 1000.0]], dtype=np.float32)))[0, :, 0].tolist() == [0, 0, 255]
    with pytest.raises(ValueError, match="non-finite"):
        to_rgb(Image.fromarray(np.array([[np.nan, 1.0]], dtype=np.float32)))


def test_bilevel_grayscale_and_palette():
    assert _rgb(Image.fromarray(np.array([[0, 255]], dtype=np.uint8)).convert("1"))[0, :, 0].tolist() == [0, 255]
    assert _rgb(Image.fromarray(np.array([[7, 200]], dtype=np.uint8)))[0].tolist() == [[7, 7, 7], [200, 200, 200]]
    pal = Image.new("P", (2, 1))
    pal.putpalette([10, 20, 30, 200, 100, 50] + [0] * 762)
    pal.putdata([0, 1])
    assert _rgb(pal)[0].tolist() == [[10, 20, 30], [200, 100, 50]]


def test_alpha_is_composited_on_white():
    rgba = Image.fromarray(np.array([[[255, 0, 0, 255], [255, 0, 0, 0], [0, 0, 0, 128]]], dtype=np.uint8))
    assert _rgb(rgba)[0].tolist() == [[255, 0, 0], [255, 255, 255], [127, 127, 127]]
    la = Image.fromarray(np.array([[[0, 0], [0, 255]]], dtype=np.uint8)).convert("LA")
    assert _rgb(la)[0].tolist() == [[255, 255, 255], [0, 0, 0]]
    assert _rgb(la.convert("La"))[0].tolist() == [[255, 255, 255], [0, 0, 0]]
    assert _rgb(rgba.convert("RGBa"))[0, 1].tolist() == [255, 255, 255]
    pal = Image.new("P", (2, 1))
    pal.putpalette([0, 0, 0, 9, 9, 9] + [0] * 762)
    pal.putdata([0, 1])
    pal.info["transparency"] = 0  # palette index 0 transparent
    assert _rgb(_roundtrip(pal))[0].tolist() == [[255, 255, 255], [9, 9, 9]]
    assert _rgb(_roundtrip(pal).convert("PA"))[0].tolist() == [[255, 255, 255], [9, 9, 9]]
    assert np.asarray(to_rgb(rgba, background=(0, 0, 0)))[0, 1].tolist() == [0, 0, 0]


def test_colour_spaces():
    red = Image.new("RGB", (1, 1), (255, 0, 0))
    assert _rgb(_roundtrip(red.convert("CMYK"), "JPEG", quality=100))[0, 0].tolist() == pytest.approx([254, 0, 0], abs=2)
    assert _rgb(red.convert("CMYK"))[0, 0].tolist() == [255, 0, 0]
    assert _rgb(red.convert("YCbCr"))[0, 0].tolist() == pytest.approx([255, 0, 0], abs=2)
    assert _rgb(red.convert("HSV"))[0, 0].tolist() == pytest.approx([255, 0, 0], abs=2)
    assert _rgb(Image.new("RGBX", (1, 1), (1, 2, 3, 0)))[0, 0].tolist() == [1, 2, 3]


def test_multi_frame_images_use_the_first_frame():
    frames = [Image.new("RGB", (4, 4), c) for c in [(255, 0, 0), (0, 0, 255)]]
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:])
    buf.seek(0)
    gif = Image.open(buf)
    gif.seek(1)
    assert frame_count(gif) == 2
    px = _rgb(gif)[0, 0]
    assert px[0] > 200 and px[2] < 50


@pytest.mark.parametrize("name, make, expect", [
    ("gray16.png", lambda: Image.fromarray(np.array([[0, 32768, 65535]], dtype=np.uint16)), [0, 128, 255]),
    ("float.tiff", lambda: Image.fromarray(np.array([[0.0, 0.5, 1.0]], dtype=np.float32)), [0, 128, 255]),
    ("la.png", lambda: Image.fromarray(np.array([[[0, 0], [0, 255], [200, 255]]], dtype=np.uint8)).convert("LA"),
     [255, 0, 200]),
    ("cmyk.tiff", lambda: Image.new("RGB", (3, 1), (0, 0, 255)).convert("CMYK"), [0, 0, 0]),
])
def test_upscale_reads_files_of_every_mode_with_their_range(tmp_path, name, make, expect):
    """`hiresflow upscale`'s reader (`load_user_image`) goes through `to_rgb`: first channel per pixel."""
    from hiresflow.upscale import load_user_image

    make().save(tmp_path / name)
    assert np.asarray(load_user_image(tmp_path / name))[0, :, 0].tolist() == expect


def test_upscale_names_the_file_with_non_finite_pixels(tmp_path):
    from hiresflow.upscale import load_user_image

    Image.fromarray(np.array([[np.inf, 0.0]], dtype=np.float32)).save(tmp_path / "inf.tiff")
    with pytest.raises(ValueError, match=r"inf.tiff: the image holds non-finite"):
        load_user_image(tmp_path / "inf.tiff")
