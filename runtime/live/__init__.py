"""The frame side of a show: the receive, engine and send threads, their slots, and telemetry."""
