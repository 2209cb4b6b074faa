"""Readers of CRDS servers: the JSON-RPC client and the verified mapping cache."""
