"""Pretrained encoders imported from other frameworks' files (no torch)."""
