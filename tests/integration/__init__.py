"""Real transports and programs (``integration`` marker): ``kdlive listen`` over a JACK server,
the Pure Data example, a terminal. They need jackd, pd and script(1) (``scripts/setup.sh``)."""
