"""Video files in and out, window by window (PyAV): the streamed source and the incrementally written output."""
