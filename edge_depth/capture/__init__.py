"""Capture: camera sources (V4L2 devices, RTSP/HTTP streams, video files, depth recordings) to resized frames."""
