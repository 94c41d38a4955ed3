"""The test suite: ``live/``, ``train/``, ``export/`` (one folder per package, each needing only
what that package installs), ``integration/`` (real transports and programs: JACK, Pure Data, a
terminal) and the whole-repository checks here. Builders live in ``live.testing`` and
``train.testing``; fixtures are registered by the ``conftest.py`` files."""
