"""Face-only dubbing: face boxes, SAM2 face masks, crop -> generate -> paste, and the compositor
that leaves every pixel outside the face mask exactly as in the source; ``face_stream`` does the same window
by window from a video file (flat memory, any length)."""
