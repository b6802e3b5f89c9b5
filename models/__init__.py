"""Trained SNIS-896 models shipped with snisd (see README.md in this folder)."""
