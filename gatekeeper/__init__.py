"""agentgate: governs what AI agents and other bots may do in a repository."""

__version__ = "0.1.0"
