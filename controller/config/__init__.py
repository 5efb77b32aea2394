"""Configuration: the schema (frozen dataclasses), the YAML file's reader, value bounds and host names."""
