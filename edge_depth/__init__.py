"""edge-depth: relative depth from cameras on Intel CPUs with OpenVINO, published over MQTT."""

__version__ = "0.1.0"
