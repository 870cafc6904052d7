"""Sampling: timestep schedule, solvers, guidance and the streaming window loop."""
