"""Colours of the reference world, chosen so detectors can separate object classes.

Colour design rules (checked by ``tests/world``):

* sun / moon discs are the only pixels with ``max >= 215`` *and* ``R >= B + 12``
  (sky, clouds, snow and stars are bluish or darker; warm things stay <= ~200);
* tree canopies are the only pixels with ``G >= 1.45 R + 6``, ``G >= 1.1 B + 4``, ``G >= 16``
  (grass is yellow-green, water and sky are blue);
* house roofs are the only red surfaces: ``R >= 2 G + 4`` and ``R >= 2 B + 4``
  (a red sun also is, but it is far brighter and never touches the house).

All values are sRGB in 0..255.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "TIMES",
    "BODY_COLORS",
    "SKY",
    "AMBIENT",
    "BODY_RGB",
    "GROUND_RGB",
    "ROCK_RGB",
    "SNOW_RGB",
    "PINE_RGB",
    "OAK_RGB",
    "TRUNK_RGB",
    "WALL_RGB",
    "ROOF_RGB",
    "DOOR_RGB",
    "WINDOW_RGB",
    "CLOUD_RGB",
    "STAR_RGB",
    "WATER_RGB",
]

TIMES = ("day", "sunset", "night")

#: Allowed colour names of the sun (day, sunset) or moon (night).
BODY_COLORS: dict[str, tuple[str, ...]] = {
    "day": ("yellow", "white"),
    "sunset": ("red", "orange", "yellow"),
    "night": ("white", "pale", "yellow"),
}


def _c(*v: float) -> np.ndarray:
    return np.array(v, np.float32)


#: Sky gradient stops: (top, middle, horizon).
SKY: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {
    "day": (_c(52, 104, 190), _c(96, 152, 218), _c(170, 202, 232)),
    "sunset": (_c(56, 46, 110), _c(146, 78, 122), _c(196, 124, 84)),
    "night": (_c(6, 10, 28), _c(14, 22, 52), _c(36, 48, 84)),
}

#: Light falling on land objects (multiplies their base colour).
AMBIENT: dict[str, np.ndarray] = {
    "day": _c(1.0, 1.0, 1.0),
    "sunset": _c(0.78, 0.64, 0.60),
    "night": _c(0.40, 0.42, 0.56),
}

BODY_RGB: dict[tuple[str, str], np.ndarray] = {
    ("sun", "yellow"): _c(255, 224, 92),
    ("sun", "white"): _c(255, 250, 226),
    ("sun", "orange"): _c(255, 150, 46),
    ("sun", "red"): _c(238, 66, 44),
    ("moon", "white"): _c(252, 248, 222),
    ("moon", "pale"): _c(250, 242, 196),
    ("moon", "yellow"): _c(250, 218, 120),
}

GROUND_RGB: dict[str, np.ndarray] = {
    "grass": _c(128, 138, 60),
    "dry": _c(158, 130, 80),
    "snow": _c(214, 222, 238),
}

#: Rock of the far, middle and near ranges (before haze).
ROCK_RGB = (_c(112, 112, 140), _c(96, 94, 112), _c(78, 74, 84))
SNOW_RGB = _c(236, 240, 250)
PINE_RGB = _c(30, 94, 42)
OAK_RGB = _c(50, 128, 40)
TRUNK_RGB = _c(92, 62, 40)
WALL_RGB = _c(186, 170, 146)
ROOF_RGB = _c(160, 30, 28)
DOOR_RGB = _c(86, 52, 34)
WINDOW_RGB = {"day": _c(70, 92, 118), "sunset": _c(80, 74, 96), "night": _c(186, 146, 66)}
#: Cloud colour: (lit top, shaded base) per time of day.
CLOUD_RGB: dict[str, tuple[np.ndarray, np.ndarray]] = {
    "day": (_c(238, 242, 250), _c(188, 198, 218)),
    "sunset": (_c(196, 136, 128), _c(120, 78, 104)),
    "night": (_c(92, 98, 124), _c(40, 44, 64)),
}
STAR_RGB = _c(222, 230, 255)
WATER_RGB = {"day": _c(28, 70, 96), "sunset": _c(40, 36, 62), "night": _c(6, 12, 26)}
