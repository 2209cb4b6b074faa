"""Pure CRDS context logic: the safe mapping parser, mapping library, diff, history and keywords."""
