"""avlib: the library behind *Lips & Voices*, an executable book on audio-visual speech models.

Layers, each importing only those before it: the **spine** (``book``, ``cli``, ``profiles``,
``artifacts``, ``checkpoints``, ``train``, ``plotting``, ``progress``, ``envinfo``), the
**signals** (``media``, ``audio``, ``faces``), **data** (``data/``: datasets, formats, tracking,
crops, preprocessing, the clip store; ``corpus/``: the embedded corpus), **models** (``models/``:
one file per paper) and the **tasks** (``sync/``: how sync models are fed, trained and judged).
``CONTRIBUTING.md`` has one row per module.
"""
__version__ = "0.1.0"
