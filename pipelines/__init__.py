"""Decoding, the inference engine, encoding."""
