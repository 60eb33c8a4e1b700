"""Configuration models of every component (pydantic), their JSON Schemas and the errors users see."""
