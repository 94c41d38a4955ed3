"""The data pipeline (``kdtrain data``), in the order it runs:

- ``collection``: a folder of General MIDI files -> Slakh layout, each kept track rendered
  once with FluidSynth (``render``, ``fluid``) and a General MIDI soundfont (``soundfonts``);
- ``slakh``: read a Slakh2100-layout folder (the real data set or a rendered collection);
- ``stems``: one stem (MIDI part + audio) -> its 2-bar windows (``features``: log-mel);
- ``store``: the window store they are appended to, memory-mapped for training;
- ``build``: the whole of it, resumable, with the summary and the skip report.
"""
