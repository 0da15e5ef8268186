"""Tests of the sans-IO wire codecs."""
