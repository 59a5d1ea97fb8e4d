"""The depth model: the IR contract shared with `convert`, the resize to its input, and the OpenVINO engine.

The only package of the daemon that imports OpenVINO.
"""
