"""Several GPUs for one render: Ulysses sequence parallelism and guidance parallelism of the DiT.

``sequence.SequenceShard``: one rank's slice of the tokens inside a forward (all-to-all around
self-attention). ``layout``: which ranks run which guidance rows. ``pool.ParallelDiT``: the DiT
as seen by the sampler, its forwards run by one worker process per device (``worker``).
"""
