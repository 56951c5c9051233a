"""Real inference servers for the tests: the model repositories they load and how to start them.

`make test` installs each server in a venv of its own (the Makefile's real-servers targets) and sets
VIGIL_REAL_SERVERS=1, under which a server that is not installed or does not start fails its tests.
"""
