"""The commands, a module per family (images, signing, upkeep), each resolving one Setup (setup.py) from the parsed
options (options.py, values.py) and ending through outcome.py. The library below knows nothing of them."""
