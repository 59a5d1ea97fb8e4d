"""Configuration: the strict schema of the YAML file, its loader (line numbers, substitution) and error text."""
