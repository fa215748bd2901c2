"""The catalog (``images.yaml``): YAML with positions, the JSON Schema, the tag and reference rules, the model."""
