"""Developer tools behind ``pampero dev ...``: things that help try and test pampero locally."""
