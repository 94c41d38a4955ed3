"""kdlive's training side, in the order the data moves:

- ``train.data``: a MIDI collection (rendered with FluidSynth) or Slakh2100 -> window store;
- ``train.models``: the audio teacher and the notes-only students;
- ``train.steps``, ``train.loop``: the losses of a batch, and the one training loop;
- ``train.evaluate``, ``train.report``: test metrics and the run report;
- ``train.pipeline``: ``kdtrain all``'s stages, each resumable; ``train.cli``: ``kdtrain``.

Settings are typed dataclasses in ``train.config``.
"""
