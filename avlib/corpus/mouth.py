"""The mouth parameter vector shared by the articulation model and the face renderer.

A mouth state is a float32 vector with one value per name in :data:`MOUTH_PARAMS`; a
trajectory is an array of shape (T, len(MOUTH_PARAMS)), one row per video frame at 25 fps.
All values lie in [0, 1]:

- ``jaw_open``: vertical opening of the jaw (0 closed, 1 widest vowel such as /a/).
- ``lip_spread``: horizontal stretch of the lip corners (/i/, /s/).
- ``lip_round``: rounding (/u/, /w/, /o/): narrower, pursed lips around a smaller opening.
- ``lip_close``: bilabial closure (/p/, /b/, /m/): 1 means lips sealed, whatever the jaw does.
- ``lip_press``: compression of the sealed lips (thinner, paler lips: strongest for /p/).
- ``labiodental``: lower lip tucked under the upper teeth (/f/, /v/).
- ``tongue``: tongue tip visible between the teeth (/th/, /l/).
"""
from __future__ import annotations

MOUTH_PARAMS: tuple[str, ...] = (
    "jaw_open",
    "lip_spread",
    "lip_round",
    "lip_close",
    "lip_press",
    "labiodental",
    "tongue",
)
N_MOUTH = len(MOUTH_PARAMS)
INDEX = {name: i for i, name in enumerate(MOUTH_PARAMS)}
