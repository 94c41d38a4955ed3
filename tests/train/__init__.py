"""Tests of ``train`` (and of ``kdtrain``): they need the train extra."""
