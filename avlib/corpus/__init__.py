"""The embedded corpus: synthesized speech, articulated mouths, rendered faces, real file layouts."""
