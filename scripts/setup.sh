#!/usr/bin/env bash
# Set up kdlive on a fresh Debian/Ubuntu machine: system packages, the CPU build of torch, and
# the project itself (editable, with the training extra, the Dask engine of `kdtrain data
# --cluster` and the dev tools). Used by the README and by .ci/run.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"

APT_PACKAGES=(
  # FluidSynth and General MIDI soundfonts: render MIDI tracks into stems
  fluidsynth fluid-soundfont-gm musescore-general-soundfont-small timgm6mb-soundfont
  # the demo corpus: ~95 real General MIDI songs that a package manager installs
  openttd-openmsx simutrans-data planetblupi-music-midi
  # libsndfile for soundfile (FLAC)
  libsndfile1
  # a real MIDI transport without a sound card (the daemon's tests start `jackd -d dummy`), an
  # independent MIDI clock source, and an OSC receiver (oscdump)
  jackd2 jack-midi-clock liblo-tools
  # Pure Data, headless: runs the OSC receiver in examples/ (its test)
  puredata-core
  # venv: .ci/run runs the live tests in a venv with only the base install and the dev tools
  python3-venv
)

if command -v apt-get >/dev/null; then
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
    "${APT_PACKAGES[@]}" >/dev/null
else
  echo "setup: no apt-get here; install FluidSynth and GM soundfonts yourself (see README)" >&2
fi

PIP="python3 -m pip"
# The CPU build of torch first: any torch requirement it satisfies then installs nothing more,
# where pip would otherwise pull the newest, multi-GB CUDA build.
$PIP install -q "torch==2.13.0"
$PIP install -q -e ".[train,dev,cluster]"
