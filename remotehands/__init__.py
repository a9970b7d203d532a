"""remotehands: turn approved datacenter tickets into verified, resumable jobs on real equipment."""

__version__ = "0.1.0"
