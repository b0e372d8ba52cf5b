"""Just-in-time credentials for agents: who the agent is (`authenticate`: OIDC ID tokens through
`oidc`, agent keys through `agentkeys`), then the grant, the platform token and its revocation."""
