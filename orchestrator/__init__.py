"""orch: a declarative experiment orchestrator for LLM training campaigns on Slurm."""

__version__ = "0.1.0"
