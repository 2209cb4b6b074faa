"""Command line: one module per command group; kept empty so the fast entry point stays light."""
