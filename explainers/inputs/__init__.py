"""What visitors and users hand the engine: images, uploads, server paths inside the data roots, samples."""
