"""kdlive's application: the three console scripts, on top of ``live``, ``train`` and ``export``.

Each script has its own module, so that starting one imports only what it composes:
``kdapp.kdlive`` only ``live`` (it runs in an install without the ``train`` extra),
``kdapp.kdexport`` ``export``, and ``kdapp.kdtrain`` ``train`` with ``export``'s bundle as the
last stage of ``kdtrain all``. Nothing imports this package; it imports nothing here.
"""
