"""carebus local: the stack described by template.yaml, provisioned on moto and run on a laptop."""
