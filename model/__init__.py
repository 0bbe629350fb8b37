"""Training and export of the digits model (needs TensorFlow; never imported by app/)."""
