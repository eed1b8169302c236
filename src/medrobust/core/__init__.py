"""The science every stage shares: the network and its checkpoint, metrics, PGD, data splits,
the config and its schema, errors and files. Stages import the core; the core imports no stage."""
