"""One-shot commands beside the daemon: `predict` on photos and the `bench` benchmark."""
