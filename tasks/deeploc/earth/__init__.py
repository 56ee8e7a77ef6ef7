"""Places on the sphere: distances, S2 cells and their outlines, the adaptive partitionings, countries, continents and populated places."""
