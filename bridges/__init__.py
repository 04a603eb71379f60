"""Frame transports, one plugin per file behind the Source/Sink protocol of :mod:`dreamwire.bridges.base`."""
