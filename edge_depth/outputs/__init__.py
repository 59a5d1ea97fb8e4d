"""Per-camera outputs of each depth frame: heatmaps, alerts and meters, handed to a publisher."""
