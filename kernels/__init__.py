"""CUDA sources of the three hot paths (shipped as package data; see xstereo_gpu/_kernels.py)."""
