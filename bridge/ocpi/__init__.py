"""OCPI intake: the Locations receiver, the credentials handshake, sender polling and the simulated CPO."""
