"""Lip-sync generation (Wav2Lip): how the generator is fed, trained, run on a user's video and
judged.

=====================  ===========================================================================
module                 what
=====================  ===========================================================================
``data``               training windows drawn from the clip store as ``wav2lip_train.py`` draws
                       them (masked target, wrong-window reference, the -1-frame mel quirk)
``recipes``            Wav2Lip, Wav2Lip + GAN, the no-expert ablation and a VocaLiST expert
``infer``              ``avlib lipsync``: a face video or image + audio -> a lip-synced video
``metrics``            LSE-D/C, lip gap against the truth, landmark distance, SSIM/PSNR, FID
=====================  ===========================================================================
"""
from __future__ import annotations

from avlib.lipsync.data import Wav2LipWindows, generator_input, mask_lower_half
from avlib.lipsync.recipes import (SETUPS, SyncSwitch, SyncSwitchWarning, Wav2LipRecipe,
                                   Wav2LipSetup, train, with_widths)

__all__ = ["Wav2LipWindows", "generator_input", "mask_lower_half", "SETUPS", "SyncSwitch",
           "SyncSwitchWarning", "Wav2LipRecipe", "Wav2LipSetup", "train", "with_widths",
           "lipsync", "synthesize_crops"]


def __getattr__(name: str):
    # the inference module imports mediapipe and ffmpeg plumbing: only when it is asked for
    if name in ("lipsync", "synthesize_crops", "load_wav2lip"):
        from avlib.lipsync import infer

        return getattr(infer, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
