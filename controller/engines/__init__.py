"""Inference engines: their metric names (specs), the exposition parser, the scraper, and capacity estimates."""
