"""Audio-visual sync: how the sync models are fed, trained and judged.

=====================  ===========================================================================
module                 what
=====================  ===========================================================================
``protocol``           the shared evaluation: syncnet_python offsets (LSE-D / LSE-C), scorers,
                       the VocaLiST accuracy-vs-context protocol, the paper table
``pairs``              training pairs drawn from the clip store as each paper drew them
``recipes``            the training recipes of SyncNet, the Wav2Lip expert and VocaLiST
``distill``            MTDVocaLiST: multi-teacher relational distillation of VocaLiST
``evaluate``           the protocol run over a clip store's test clips; what silence does to it
``tool``               ``avlib sync check|fix``: measure and correct the offset of any video;
                       :func:`lse`, the LSE-D / LSE-C metric of a video or of arrays
``batch``              the fast SyncNet engine (bf16), many videos with a resumable CSV and
                       worker processes, ``avlib sync filter`` for datasets
=====================  ===========================================================================

The names readers call most are re-exported here (``avlib.sync.syncnet_offset``,
``avlib.sync.evaluate_store``, ``avlib.sync.lse``, ...); the networks themselves live in
:mod:`avlib.models`. ``lse`` is imported on first use (the sync tool loads mediapipe).
"""
from __future__ import annotations

from avlib.sync.evaluate import *  # noqa: F403
from avlib.sync.evaluate import __all__ as _evaluate_all
from avlib.sync.pairs import SyncPairs
from avlib.sync.protocol import *  # noqa: F403
from avlib.sync.protocol import __all__ as _protocol_all
from avlib.sync.recipes import *  # noqa: F403
from avlib.sync.recipes import __all__ as _recipes_all

__all__ = [*_protocol_all, "PAPER_LRS2", *_evaluate_all, *_recipes_all, "SyncPairs", "lse"]


def __getattr__(name: str):
    # PAPER_LRS2 is built on first access (pandas comes with the book extra)
    if name == "PAPER_LRS2":
        from avlib.sync import protocol

        return protocol.PAPER_LRS2
    if name == "lse":  # the sync tool imports mediapipe: only when the metric is asked for
        from avlib.sync.tool import lse

        return lse
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
