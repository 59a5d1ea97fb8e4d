"""Real services and artefacts that tests start or build: Mosquitto, an RTSP server, synthetic-weight IRs."""
