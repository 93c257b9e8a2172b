"""Compatibility path used by the enterprise connectors guide; the code lives in connectors/."""
