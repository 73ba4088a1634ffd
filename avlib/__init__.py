"""avlib: the library behind *Lips & Voices*, an executable book on audio-visual speech models.

Modules (one concept each): ``corpus`` (embedded talking-face corpus), ``media`` (video/audio
files), ``faces`` (mediapipe face detection and mesh), ``audio`` (official audio features),
``models`` (networks), ``checkpoints`` (official weights), ``artifacts`` (train-or-load),
``book`` (the runner), ``envinfo`` (what ran where).
"""
__version__ = "0.1.0"
