"""Rendering: tables to terminal text, JSON records, figures and HTML."""
