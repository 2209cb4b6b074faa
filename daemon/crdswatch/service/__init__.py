"""The process: daemon (scheduler, signals), HTTP endpoints, systemd notify, metrics, wiring."""
