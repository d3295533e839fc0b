"""Transformation passes over the IR (installed as imccompile.passes)."""
