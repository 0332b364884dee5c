"""Files that run inside GIMP (see :mod:`chromatize_gimp`); this marker makes them package data."""
