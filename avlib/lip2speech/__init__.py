"""Lip-to-speech (VCA-GAN): data, recipes, vocoding and evaluation, the `avlib lip2speech` command."""
