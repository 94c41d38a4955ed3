"""Tests of ``export`` (and of ``kdexport``): they need the train extra."""
