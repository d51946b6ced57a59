"""Training: recipes are YAML data, one trainer per model kind."""
