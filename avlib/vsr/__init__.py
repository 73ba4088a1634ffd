"""Lip reading: word data (LRW layout), audio tokens, SyncVSR and MMAB recipes, metrics, ``avlib lipread``."""
