"""Frame transports: each module is one source/sink plugin behind :mod:`bridges.base`."""
