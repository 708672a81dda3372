"""Edge code the functions share: AWS calls and Powertools wiring, kept out of the pure domain."""
