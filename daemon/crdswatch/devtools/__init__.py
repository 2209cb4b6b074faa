"""Tools for demos and tests: the replay server, the offline demo, the bundled JWST data."""
