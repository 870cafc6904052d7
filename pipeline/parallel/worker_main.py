"""Entry point of one DiT worker process: ``python worker_main.py <pack root> <rank> <address>``.

Run as a plain script (not through multiprocessing's spawn, which would re-run the host's
``__main__``, i.e. ComfyUI's main.py, in every worker). It registers the pack under a private
name without executing its ``__init__`` (that imports the ComfyUI nodes) and serves.
"""
import importlib
import os
import sys
import types

if __name__ == "__main__":
    root = os.path.abspath(sys.argv[1])
    name = "infinitetalk_lipsync_worker"
    package = types.ModuleType(name)
    package.__path__ = [root]
    sys.modules[name] = package
    worker = importlib.import_module(name + ".pipeline.parallel.worker")
    sys.exit(worker.main(int(sys.argv[2]), sys.argv[3]))
