"""Data: real datasets' layouts, their text formats, preprocessing into the clip store, and the
store itself.

==============  ===============================================================================
module          what
==============  ===============================================================================
``datasets``    LRS2, LRS3, LRW, GRID, Acappella and corpus layouts: clip listing, split lists,
                path safety
``formats``     dataset text formats: GRID ``.align``, LRW/LRS ``.txt`` (read and write)
``tracking``    face tracks (detections linked, chosen, filled, smoothed) and the face mesh
``crops``       the per-paper crops of a tracked face
``preprocess``  the pipeline: decode, track, crop, features, store; parallel, sharded, resumable
``store``       the clip store: per-clip JPEG streams, audio, features, windows without decoding
==============  ===============================================================================
"""
